"""The parts of reading a mail, used by `intake.email.parse_message`.

- `charset`: bytes → text in the charset the bytes are really in (labels are hints).
- `headers`: RFC 2047 words (joined before decoding), raw 8-bit values, addresses, ids, dates.
- `html`: HTML → plain text with links kept as ``text (url)``.
- `trim`: quoted earlier mail and signatures cut from a reply.
- `signals`: mail-loop reasons and explainable spam points.
"""
