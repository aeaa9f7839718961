"""The new text of a mail: quoted earlier mail and signatures cut off.

A reply carries the mail it answers (``>`` lines, ``-----原始邮件-----``, "在 … 写道：",
"On … wrote:", Outlook's ``From:``/``发件人:`` block) and a signature (``-- ``,
"发自我的iPhone", "Sent from my …"). The case shows what the citizen wrote now; the raw message,
quotes and all, is kept by the caller for the audit trail. When cutting would leave nothing
(a bare forward), the text is kept whole; so is a forward ("---------- Forwarded message
----------", "-------- 转发邮件信息 --------"), whose forwarded part is what the citizen wants
read.
"""

from __future__ import annotations

import re

__all__ = ["trim_reply"]

_SEPARATOR = re.compile(
    r"^\s*(?:"
    r"-{2,}\s*(?:原始邮件|原邮件|Original Message|Original|回复的原邮件)\s*-{2,}"
    r"|_{10,}"
    r"|-{5,}\s*Reply above this line\s*-{5,}"
    r")\s*$",
    re.IGNORECASE,
)
_ATTRIBUTION = re.compile(
    r"^\s*(?:"
    r"(?:在|于).{0,80}(?:写道|wrote)\s*[:：]"
    r"|On\s.{0,200}\swrote\s*:"
    r"|.{0,80}\d{4}[-/年].{0,60}(?:写道|wrote)\s*[:：]"
    r"|Le\s.{0,200}\sa écrit\s*:"
    r"|Am\s.{0,200}\sschrieb.{0,80}:"
    r")\s*$",
    re.IGNORECASE,
)
# Outlook and Foxmail quote the mail they answer under a header block.
_HEADER_FROM = re.compile(r"^\s*\**\s*(?:From|发件人|寄件者|寄件人)\s*\**\s*[:：]", re.IGNORECASE)
_HEADER_OTHER = re.compile(
    r"^\s*\**\s*(?:Sent|Date|To|Subject|Cc|发送时间|日期|时间|收件人|抄送|主题|傳送時間|收件者|主旨)"
    r"\s*\**\s*[:：]",
    re.IGNORECASE,
)
_DEVICE = (
    r"iPhone|iPad|iPod|Android|手机|手機|安卓|设备|設備|平板|电脑|電腦|Mac|Mate|Phone|Pad|华为|"
    r"小米|荣耀|OPPO|vivo|三星|Galaxy|Redmi|红米|一加|魅族"
)
_SIGNATURE = re.compile(
    r"^\s*(?:"
    r"--\s?"
    # "发自我的iPhone", "来自我的华为 Mate 60": a short line that names a device, so that
    # "来自我的邻居家的噪音……" stays.
    rf"|(?:发自|來自|来自|从|從|寄自)我的(?=.{{0,36}}$)(?=.*(?:{_DEVICE})).*"
    r"|(?:从|從)我的\s*.{0,24}(?:发送|傳送)"
    r"|发自(?:网易邮箱大师|手机QQ邮箱|QQ邮箱|腾讯企业邮|Outlook|Foxmail|.{0,12}邮箱.{0,6})"
    r"|Sent from my\s.{1,40}"
    r"|Sent from (?:Mail|Outlook|Yahoo Mail|Gmail|my mobile).{0,40}"
    r"|Get Outlook for\s.{1,30}"
    r")\s*$",
    re.IGNORECASE,
)
_FORWARD = re.compile(
    r"^\s*(?:-{2,}\s*(?:Forwarded message|Original forwarded message|转发邮件信息|转发的邮件|"
    r"转发邮件|轉寄郵件)\s*-{2,}|Begin forwarded message\s*:)\s*$",
    re.IGNORECASE,
)
_QUOTED = re.compile(r"^\s*[>＞]")


def _two_line_attribution(lines: list[str], index: int) -> bool:
    if index + 1 >= len(lines):
        return False
    joined = lines[index].rstrip() + " " + lines[index + 1].strip()
    return bool(_ATTRIBUTION.match(joined)) and not _ATTRIBUTION.match(lines[index + 1])


def _cut_index(lines: list[str]) -> int | None:
    for index, line in enumerate(lines):
        if _FORWARD.match(line):
            return None  # a forward: what follows is what the citizen wants us to read
        if _SEPARATOR.match(line) or _ATTRIBUTION.match(line) or _SIGNATURE.match(line):
            return index
        if _two_line_attribution(lines, index):
            return index
        if _HEADER_FROM.match(line):
            window = lines[index + 1 : index + 6]
            if sum(1 for other in window if _HEADER_OTHER.match(other)) >= 2:
                return index
    return None


def trim_reply(text: str) -> str:
    """``text`` without quoted earlier mail and signatures; ``text`` itself if nothing is left.

    Cuts at the first separator, attribution line ("在 2026年…写道：", "On … wrote:"), Outlook
    header block or signature line, and drops every ``>`` line above it (inline quoting).
    Line breaks are ``\\n``.
    """
    lines = text.split("\n")
    cut = _cut_index(lines)
    kept = lines if cut is None else lines[:cut]
    kept = [line for line in kept if not _QUOTED.match(line)]
    result = "\n".join(kept).strip()
    return result or text.strip()
