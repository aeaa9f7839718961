"""The monthly report: its figures (figures.py), hot issues (hot_issues.py), and the email,
charts and spreadsheet built from them."""
