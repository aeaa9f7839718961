"""What a file really is, from its first bytes rather than the name or the sender's claim."""

from __future__ import annotations

_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"%PDF-", 0, "application/pdf"),
    (b"PK\x03\x04", 0, "application/zip"),
)


def sniff_type(data: bytes) -> str:
    """The MIME type the content shows, or application/octet-stream."""
    for magic, offset, mime in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"heim"):
        return "image/heic"
    return "application/octet-stream"


_EXTENSIONS = {
    "image/jpeg": (".jpg", ".jpeg", ".jpe"),
    "image/png": (".png",),
    "image/gif": (".gif",),
    "image/webp": (".webp",),
    "image/heic": (".heic", ".heif"),
    "application/pdf": (".pdf",),
    "application/zip": (".zip",),
}


def name_for_type(filename: str, content_type: str) -> str:
    """The file name, ending in an extension of what the content really is.

    ``"photo.jpg.html"`` holding a PNG → ``"photo.jpg.html.png"``: whoever downloads it opens
    what it is, not what its name claims.
    """
    extensions = _EXTENSIONS.get(content_type)
    if not extensions or filename.lower().endswith(extensions):
        return filename
    return filename + extensions[0]
