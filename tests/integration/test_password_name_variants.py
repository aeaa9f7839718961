"""The office's, the departments' and the system's names in a password written with separators
between their syllables or letters, with pinyin's tone marks or in traditional characters
are refused as the names are (web/passwords.py), with the name found in the message; other
passwords with separators, accents or Chinese words pass."""

from __future__ import annotations

import pytest

from web.passwords import WeakPassword, check_password

OFFICE = ["民声区机关效能建设办公室", "Minsheng District Efficiency Office"]
DEPARTMENTS = ["区住房和城乡建设局"]


def _check(password: str) -> None:
    check_password(password, "newuser", office=OFFICE, departments=DEPARTMENTS)


@pytest.mark.parametrize(
    ("password", "named"),
    [
        ("Min-Sheng2026!", "minsheng"),
        ("min_sheng#2026", "minsheng"),
        ("M1n-5h3ng!2026", "minsheng"),
        ("M1n.5h3ng!2026", "minsheng"),
        ("m.i.n.s.h.e.n.g-2026", "minsheng"),
        ("mínshēng2026!", "minsheng"),
        ("民-声2026abcd!", "民声"),
        ("民聲-2026abcd!", "民聲"),
        ("Xiao-Neng-Ban2026", "xiaoneng"),
        ("xiao.neng.jian.she88", "效能建设"),
        ("效-能-建-设-88x", "效能建设"),
        ("效能建設2026abc", "效能建设"),
        ("xiào-néng-jiàn-shè!88", "效能建设"),
    ],
)
def test_a_name_written_apart_accented_or_traditional_is_refused(password: str, named: str) -> None:
    with pytest.raises(WeakPassword) as refused:
        _check(password)
    assert named in str(refused.value), str(refused.value)


@pytest.mark.parametrize(
    "password",
    ["Qv7!plumb-ostrich-9", "Tr0ub4dor&3-zebra!", "Café-Olé-Zürich-42", "我的猫叫咪咪2019xyz!"],
)
def test_passwords_with_separators_accents_or_chinese_of_their_own_pass(password: str) -> None:
    _check(password)
