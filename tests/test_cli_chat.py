"""The terminal chat driven through piped stdin, as scripts (and `make demo`) drive it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

YXBY = str(Path(sys.executable).with_name("yxby"))


def run(args: list[str], stdin: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "YXBY_DATA_DIR": str(data_dir)}
    env.pop("YXBY_DATABASE_URL", None)
    return subprocess.run(args, input=stdin, capture_output=True, text=True, env=env, timeout=120)


def test_chat_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    r = run([YXBY, "chat"], "你好\n", tmp_path)
    assert r.returncode == 1
    assert "yxby db upgrade" in r.stderr and "Traceback" not in r.stderr


def test_piped_chat_answers_files_a_ticket_and_shows_progress(tmp_path: Path) -> None:
    assert run([YXBY, "db", "upgrade"], "", tmp_path).returncode == 0
    lines = [
        "12345热线能反映企业的问题吗",
        "已解决",
        "提交诉求",
        "园区门口的道路破损严重，货车进出困难，希望尽快修复",
        "天津示例物流有限公司",
        "13800138000",
        "确认提交",
        "查询",
    ]
    r = run([YXBY, "chat", "--user", "script"], "\n".join(lines) + "\n", tmp_path)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "12345" in out
    assert "很高兴帮到您" in out
    assert "诉求已登记，编号 YX-" in out
    assert "待签收" in out  # the progress listing
    assert "Traceback" not in r.stderr


def test_commissioner_terminal_takes_a_handoff(tmp_path: Path) -> None:
    assert run([YXBY, "db", "upgrade"], "", tmp_path).returncode == 0
    add = run([YXBY, "commissioners", "add", "李娜", "--department", "政务办"], "", tmp_path)
    assert add.returncode == 0, add.stderr
    # the commissioner opens a terminal first (that binds the terminal to 李娜)
    assert run([YXBY, "chat", "--commissioner", "李娜"], "", tmp_path).returncode == 0
    ent = run([YXBY, "chat", "--user", "e1"], "转人工\n", tmp_path)
    assert "正在为您联系政务办" in ent.stdout
    staff = run([YXBY, "chat", "--commissioner", "李娜"], "接入\n您好，请讲\n", tmp_path)
    assert "您已接入" in staff.stdout, staff.stdout + staff.stderr
    back = run([YXBY, "chat", "--user", "e1", "--no-greeting"], "", tmp_path)
    assert "李娜" in back.stdout and "您好，请讲" in back.stdout


def test_demo_runs_from_piped_input(tmp_path: Path) -> None:
    r = run([sys.executable, "-m", "bot.demo"], "营业执照丢了怎么补办\n已解决\n", tmp_path)
    assert r.returncode == 0, r.stderr
    assert "营业执照" in r.stdout and "很高兴帮到您" in r.stdout


def test_kb_gaps_lists_what_nothing_answered(tmp_path: Path) -> None:
    assert run([YXBY, "db", "upgrade"], "", tmp_path).returncode == 0
    asked = "园区食堂的伙食补贴怎么申请\n园区食堂伙食补贴\n不用了\n"
    assert run([YXBY, "chat", "--user", "g1"], asked, tmp_path).returncode == 0
    r = run([YXBY, "kb", "gaps"], "", tmp_path)
    assert r.returncode == 0, r.stderr
    assert "食堂" in r.stdout and "次" in r.stdout
