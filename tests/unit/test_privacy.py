"""Masking of personal data for external supervisors and the public."""

from __future__ import annotations

from triage.privacy import mask_email, mask_name, mask_phone, mask_text


def test_contact_fields() -> None:
    assert mask_name("王小明") == "王**"
    assert mask_name("") == ""
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("021-6543 2100") == "021****2100"
    assert mask_email("zhang.san@example.com") == "z***@example.com"


def test_numbers_inside_free_text() -> None:
    text = "我叫李四，电话13912345678，身份证320412198801011234，邮箱lisi@qq.com，座机0519-86123456"
    masked = mask_text(text)
    for secret in ("13912345678", "198801011234", "lisi@qq.com", "86123456"):
        assert secret not in masked
    assert "139****5678" in masked and "320412" in masked and "l***@qq.com" in masked
    assert mask_text("明德路126号的酒吧每晚唱到2点") == "明德路126号的酒吧每晚唱到2点"
