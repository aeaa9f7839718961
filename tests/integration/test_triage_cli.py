"""`minsheng triage train / evaluate / retrain`: the contracts other tools call, and what a
supervisor's corrections and a mismatched model do to routing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from tests.conftest import make_settings
from tests.integration.helpers import post_form, submit_complaint
from web.cli import main
from web.demo import DEMO_TRAINING
from web.runtime import RouterProvider

EVALUATE_KEYS = {
    "n_train",
    "n_test",
    "accuracy",
    "macro_f1",
    "top3_accuracy",
    "per_label",
    "auto_route",
    "train_seconds",
    "predict_per_second",
}


def invoke(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def split_demo(tmp_path: Path) -> tuple[Path, Path]:
    lines = DEMO_TRAINING.read_text(encoding="utf-8").splitlines()
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    train.write_text("\n".join(x for i, x in enumerate(lines) if i % 4) + "\n", encoding="utf-8")
    test.write_text("\n".join(x for i, x in enumerate(lines) if not i % 4) + "\n", encoding="utf-8")
    return train, test


def test_evaluate_prints_one_json_object(tmp_path: Path) -> None:
    train, test = split_demo(tmp_path)
    out = invoke("triage", "evaluate", "--train", str(train), "--test", str(test), "--json")
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report.keys() >= EVALUATE_KEYS
    assert report["n_test"] == len(test.read_text(encoding="utf-8").splitlines())
    assert set(report["per_label"]) >= {"城乡建设", "安全生产"}
    for m in report["per_label"].values():
        assert {"precision", "recall", "f1", "support"} <= m.keys()
    assert {"threshold", "coverage", "precision"} <= report["auto_route"].keys()
    assert 0.5 < report["macro_f1"] <= 1 and report["top3_accuracy"] >= report["accuracy"]


def test_train_names_an_unmapped_label_and_a_bad_line(config_file: Path, tmp_path: Path) -> None:
    def train_on(name: str, text: str) -> Any:
        data = tmp_path / name
        data.write_text(text, encoding="utf-8")
        args = ["triage", "train", "--data", str(data), "--config", str(config_file)]
        return CliRunner().invoke(main, args)

    out = train_on("bad.jsonl", '{"subject": "", "body": "有人在河里电鱼", "label": "农业农村"}\n')
    assert out.exit_code != 0 and "农业农村" in out.output
    out = train_on(
        "broken.jsonl", '{"subject": "", "body": "路灯坏了", "label": "城乡建设"}\n{oops\n'
    )
    assert out.exit_code != 0 and "broken.jsonl:2" in out.output


def test_train_deploys_and_retrain_keeps_a_better_model(config_file: Path, tmp_path: Path) -> None:
    out = invoke("triage", "train", "--data", str(DEMO_TRAINING), "--config", str(config_file))
    assert out.exit_code == 0, out.output
    assert "deployed" in out.output and "macro-F1" in out.output
    models = tmp_path / "inst" / "models"
    version = next(p.name for p in models.iterdir() if (p / "metadata.json").exists())
    meta = json.loads((models / version / "metadata.json").read_text(encoding="utf-8"))
    assert {"version", "labels", "cv", "threshold", "libraries", "data"} <= meta.keys()
    assert "safety" in meta["labels"]
    # Retraining on the few demo cases alone cannot beat a model trained on 240 messages.
    assert invoke("demo", "--no-model", "--config", str(config_file)).exit_code == 0
    out = invoke("triage", "retrain", "--config", str(config_file))
    assert out.exit_code == 0, out.output
    assert f"kept {version}" in out.output


def test_model_from_another_sklearn_version_falls_back_to_keywords(
    config_file: Path, tmp_path: Path, db_url: str
) -> None:
    out = invoke("triage", "train", "--data", str(DEMO_TRAINING), "--config", str(config_file))
    assert out.exit_code == 0, out.output
    settings = make_settings(tmp_path, db_url)
    settings = settings.model_copy(
        update={
            "classifier": settings.classifier.model_copy(
                update={"model_dir": str(tmp_path / "inst" / "models")}
            )
        }
    )
    provider = RouterProvider(settings)
    assert provider.get().version != "keywords"
    meta_path = next((tmp_path / "inst" / "models").glob("*/metadata.json"))
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["libraries"]["scikit-learn"] = "0.1.0"
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    provider = RouterProvider(settings)
    assert provider.get().version == "keywords"
    assert "0.1" in provider.problem and "keyword" in provider.problem


def test_supervisor_correction_is_a_label_for_retraining(
    client: Any, login_as: Any, runtime: Any
) -> None:
    from sqlalchemy import select

    from triage.models import Case
    from web.cli_triage import case_examples

    number, _ = submit_complaint(client, "小区里的篮球场晚上灯光太亮，影响休息", subject="灯光")
    with runtime.sessions() as s:
        case = s.scalar(select(Case).where(Case.tracking_number == number))
        case_id, suggested = (
            case.id,
            case.suggested_department.code if case.suggested_department else None,
        )
    target = "environment" if suggested != "environment" else "urban"
    supervisor = login_as("supervisor")
    post_form(
        supervisor,
        f"/board/cases/{number}",
        f"/board/cases/{number}/assign",
        {f"c{case_id}-department": target},
    )
    with runtime.sessions() as s:
        case = s.scalar(select(Case).where(Case.tracking_number == number))
        assigned = case.events[-1]
        assert assigned.action == "assigned"
        if suggested:
            assert assigned.detail["corrected_from"] == suggested
    examples = case_examples(runtime)
    assert [(e.body, e.label) for e in examples] == [
        ("小区里的篮球场晚上灯光太亮，影响休息", target)
    ]


def test_hot_issues_groups_complaints_about_one_problem(config_file: Path, client: Any) -> None:
    for who in ("三楼住户", "五楼住户", "对门邻居"):
        submit_complaint(
            client,
            f"我是明德路126号{who}，楼下夜归人酒吧每晚乐队演出到凌晨两点，噪音扰民，无法入睡。",
            subject="夜归人酒吧噪音扰民",
        )
    submit_complaint(client, "社保卡补办要跑三次，能否网上办理？", subject="社保卡补办")
    out = invoke("triage", "hot-issues", "--json", "--config", str(config_file))
    assert out.exit_code == 0, out.output
    issues = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(issues) == 1 and issues[0]["size"] == 3
    assert all(n.startswith("MS-") for n in issues[0]["cases"])
