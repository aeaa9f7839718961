"""The office's, the departments' and the system's names in a password written with separators
between their syllables or letters, with pinyin's tone marks or in traditional characters
are refused as the names are (web/passwords.py), with the name found in the message; other
passwords with separators, accents or Chinese words pass. So are the account's own name in
pinyin and a department's usual short name (住建, zhujian), but not one syllable of them."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import csrf_from, password_of
from tests.integration.helpers import post_form
from web.passwords import WeakPassword, check_password

OFFICE = ["民声区机关效能建设办公室", "Minsheng District Efficiency Office"]
DEPARTMENTS = ["区住房和城乡建设局"]


def change_own_password(client: Any, current: str, new: str) -> Any:
    form = client.get("/account/password").get_data(as_text=True)
    return client.post(
        "/account/password",
        data={"csrf_token": csrf_from(form), "current": current, "new": new, "repeat": new},
    )


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


# -- the account's own name in pinyin (red team rt2) -------------------------------------------


@pytest.mark.parametrize(
    ("password", "display_name"),
    [
        ("zhoumin#2026Kq!", "周敏"),
        ("Zhou.Min@8812x", "督查科 周敏"),
        ("MinZhou#2026Kq!", "周敏"),  # given name first
        ("zhōu-mǐn#2026Kq", "周敏"),  # tone marks, a separator
        ("Zh0uM1n#2026Kq", "周敏"),  # leetspeak
        ("limingxia#88Kq", "李明霞"),
        ("wangxiaoming!Q7", "王小明"),
        ("xiaoming#Kq7vLm2$p", "王小明"),  # a given name of two syllables alone
        ("lilei#Kq7vLm2$p", "李雷"),
        ("ouyang.nana#Kq7v", "欧阳娜娜"),  # a surname of two characters
        ("zengmin#Kq7vLm2$p", "曾敏"),  # a surname's own reading (曾 is ceng elsewhere)
    ],
)
def test_the_accounts_name_in_pinyin_is_refused(password: str, display_name: str) -> None:
    """The account's Chinese name typed in pinyin, as a Chinese user types it in a password,
    is refused as the name in characters is; the office's and departments' names already
    were."""
    with pytest.raises(WeakPassword) as refused:
        check_password(password, "someone", [display_name], office=OFFICE, departments=DEPARTMENTS)
    assert "account's name" in str(refused.value), str(refused.value)


@pytest.mark.parametrize(
    ("password", "display_name"),
    [
        ("Xk9liQ2!pZm7rTv", "李雷"),  # one syllable (the surname) in a random password
        ("Kq7!min-ostrich-9", "周敏"),  # the given name of one syllable
        ("Qv7!zhou-plumb-ostrich", "周敏"),  # the surname alone
        ("zhouming#Kq7vLm2$p", "周敏"),  # another's name (周明): min is not ming
    ],
)
def test_a_syllable_of_the_accounts_name_passes(password: str, display_name: str) -> None:
    check_password(password, "someone", [display_name], office=OFFICE, departments=DEPARTMENTS)


def test_the_own_password_form_refuses_the_name_in_pinyin(login_as: Any) -> None:
    urban = login_as("urban")  # 住建局 王经办
    r = change_own_password(urban, password_of("urban"), "WangJingban#2026Kq")
    assert r.status_code == 400
    assert "密码中不能包含该账号的姓名" in r.get_data(as_text=True)


# -- a department's usual short name (red team rt2) --------------------------------------------


@pytest.mark.parametrize(
    ("password", "department", "named"),
    [
        ("住建2026!@#817", "区住房和城乡建设局", "住建"),
        ("zhujian#2026!@#8", "区住房和城乡建设局", "住建 zhujian"),
        ("人社2026!@#817", "区人力资源和社会保障局", "人社"),
        ("renshe#2026!@#81", "区人力资源和社会保障局", "人社 renshe"),
        ("wenlv#2026!@#817", "区商务和文化旅游局", "文旅 wenlv"),
        ("wenlv#2026!@#817", "区文化和旅游局", "文旅 wenlv"),
        ("Wen-Lü#2026!@#8", "区文化和旅游局", "文旅 wenlv"),
        ("Xk9wenlvQ2!pZm7", "区文化和旅游局", "文旅 wenlv"),  # anywhere: five letters
        ("城管2026!@#817", "区城市管理局", "城管"),
        ("chengguan#2026Kq", "民声区城市管理局", "城管 chengguan"),  # the district's name
        ("weijian#2026Kq!", "区卫生健康委员会", "卫健 weijian"),
        ("fagai#2026Kq!7", "区发展和改革委员会", "发改 fagai"),
        ("anjian#2026Kq!7", "区应急管理局（安监）", "安监 anjian"),  # given in brackets
    ],
)
def test_a_departments_usual_short_name_is_refused(
    password: str, department: str, named: str
) -> None:
    """A department is called by its short name (住建, 人社, 文旅, 城管) far more often than by
    its full name; with digits and symbols only it is as guessable as 效能 + digits."""
    with pytest.raises(WeakPassword) as refused:
        check_password(password, "someone", office=OFFICE, departments=[department])
    assert named in str(refused.value), str(refused.value)


@pytest.mark.parametrize(
    ("password", "department"),
    [
        ("rensheng#Kq7vLm2$p", "区人力资源和社会保障局"),  # 人生, not 人社
        ("我的人生很精彩2019xyz!", "区人力资源和社会保障局"),
        ("zhujiang-Kettle-88", "区住房和城乡建设局"),  # 珠江, not 住建
        ("lianjian-Kettle-88", "区应急管理局（安监）"),
        ("Xk9wenQ2!pZm7rTv", "区文化和旅游局"),  # one syllable of it
        ("Qv7!cheng-plumb-ostrich", "区城市管理局"),
        ("市场-Kettle-2026!", "市场监督管理局"),  # 市 of 市场 is no region
        ("Qv7!plumb-ostrich-9", "区"),  # a name that is all region: no short name, no error
        ("Qv7!plumb-ostrich-9", "（安监）"),
    ],
)
def test_a_syllable_of_a_short_name_or_a_longer_word_passes(password: str, department: str) -> None:
    check_password(password, "someone", office=OFFICE, departments=[department])


def test_a_short_name_of_a_department_added_in_the_browser_is_refused(login_as: Any) -> None:
    admin = login_as("admin")
    r = post_form(
        admin,
        "/admin/departments",
        "/admin/departments",
        {"new-code": "cg", "new-name": "民声区城市管理局", "new-name_en": "", "new-email": ""},
    )
    assert r.status_code == 302
    urban = login_as("urban")
    r = change_own_password(urban, password_of("urban"), "chengguan#2026Kq")
    assert r.status_code == 400
    assert "密码中不能包含部门的名称（城管 chengguan）" in r.get_data(as_text=True)


def test_a_short_name_given_in_the_config_is_refused(app: Any) -> None:
    """config.toml's [[departments]] may list other names a department goes by: 环保 of
    市生态环境局民声分局, which no rule derives."""
    with app.test_request_context("/?lang=en"):
        for password in ("huanbao#2026Kq!", "环保2026!@#817x"):
            with pytest.raises(WeakPassword, match="name of a department"):
                check_password(password, "someone")
