"""The domain: cases, routing, supervision rules and figures. Knows nothing of Flask."""
