"""Every way a complaint arrives, turned into one plain Submission."""

from intake.submission import Attachment, Contact, Submission

__all__ = ["Attachment", "Contact", "Submission"]
