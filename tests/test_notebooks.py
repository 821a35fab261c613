"""Every notebook runs headless, top to bottom, and checks what its buttons produced.

The notebooks press their widgets' buttons in code (``button.click()``,
``toggle.value = True``) and assert on the result: a bookmark exists, the resume skipped
no frame, forged tokens were refused. So running one is a test of the claims it shows.
``00_tour.ipynb`` leaves the pressing to the reader in JupyterLab; with
``RTSP_RESUME_AUTOPLAY=1``, set here, its cells press the buttons themselves.

The kernel is this interpreter (the project's venv), through a kernelspec written into a
private Jupyter data folder: the result does not depend on the kernels a machine has.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
ALL_NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
NOTEBOOKS = [path for path in ALL_NOTEBOOKS if "_exercise_" not in path.name]
KERNEL = "rtsp-resume-tests"


@pytest.fixture(scope="module")
def jupyter_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Private Jupyter and IPython folders holding a kernelspec for ``sys.executable``."""
    base = tmp_path_factory.mktemp("jupyter")
    spec = base / "data" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "rtsp-resume (tests)",
        "language": "python",
    }))
    dirs = {"JUPYTER_DATA_DIR": "data", "JUPYTER_CONFIG_DIR": "config",
            "JUPYTER_RUNTIME_DIR": "runtime", "IPYTHONDIR": "ipython"}
    return {name: str(base / sub) for name, sub in dirs.items()}


def test_there_is_a_notebook_per_claim_group() -> None:
    names = [path.name for path in NOTEBOOKS]
    for prefix in ("00_tour", "01_heartbeat_claims_2_8", "02_reverse_bookmark_claims_1_5_6",
                   "03_interfaces_claims_3_9", "04_tokens_claims_4_10", "05_system_claim_7",
                   "06_position_estimators"):
        assert f"{prefix}.ipynb" in names


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=[p.stem for p in ALL_NOTEBOOKS])
def test_saved_without_outputs(path: Path) -> None:
    """Committed notebooks carry no outputs: the outputs are what running them makes. Their
    metadata is what JupyterLab writes, so opening one does not mark it modified (the
    kernel's full language_info; test_lab_browser opens one to see)."""
    nb = nbformat.read(path, as_version=4)
    assert set(nb.metadata) == {"kernelspec", "language_info"}
    assert {"codemirror_mode", "mimetype", "pygments_lexer", "version"} <= set(
        nb.metadata.language_info)
    assert path.read_text().endswith("}\n") and nbformat.writes(nb) + "\n" == path.read_text()
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


def _run(nb: nbformat.NotebookNode, jupyter_dirs: dict[str, str],
         monkeypatch: pytest.MonkeyPatch) -> None:
    """Run ``nb`` in a fresh kernel; a failing cell raises CellExecutionError."""
    for name, value in jupyter_dirs.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RTSP_RESUME_AUTOPLAY", "1")
    nbclient.NotebookClient(nb, timeout=60, kernel_name=KERNEL,
                            resources={"metadata": {"path": str(NOTEBOOK_DIR)}}).execute()


def _assert_clean(nb: nbformat.NotebookNode) -> None:
    """No stderr anywhere; the widget state pinned where the notebook shows widgets."""
    views = False
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.outputs:
            # Threads that crash print to stderr; nothing else in the notebooks does.
            assert not (output.output_type == "stream" and output.name == "stderr"), (
                f"stderr in cell {cell.source[:60]!r}: {output.text[:500]}")
            views |= "application/vnd.jupyter.widget-view+json" in output.get("data", {})
    assert not views or "application/vnd.jupyter.widget-state+json" in nb.metadata.get(
        "widgets", {})


# The tour may first make its ten-minute program (a minute or two on a busy machine).
@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem, marks=pytest.mark.timeout(
    300 if p.stem == "00_tour" else 150)) for p in NOTEBOOKS])
def test_notebook_runs(path: Path, jupyter_dirs: dict[str, str],
                       monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    if path.stem == "00_tour":
        request.getfixturevalue("lesson_dir")
    nb = nbformat.read(path, as_version=4)
    _run(nb, jupyter_dirs, monkeypatch)
    _assert_clean(nb)


# Per exercise: the reference answer (the package's own piece) and a known-wrong one with
# words its check must say.
EXERCISES = {
    "07_exercise_heartbeat_verdict": (
        "from exercises import reference_verdict as is_interrupted",
        # Counts only answers and waits for more than the timeout.
        "def is_interrupted(events, now, timeout):\n"
        "    last = max([0.0] + [t for t, kind in events if kind == 'answered'])\n"
        "    return now - last > timeout",
        "you say"),
    "08_exercise_fu_a": (
        "from exercises import reference_fragments as fragment",
        # Sends the NAL unit's header byte again as data.
        "def fragment(nal, mtu):\n"
        "    pieces = [nal[i:i + mtu - 2] for i in range(0, len(nal), mtu - 2)]\n"
        "    return [bytes([(nal[0] & 0xE0) | 28, (0x80 if i == 0 else 0)\n"
        "                   | (0x40 if i == len(pieces) - 1 else 0) | (nal[0] & 0x1F)]) + p\n"
        "            for i, p in enumerate(pieces)]",
        "without its header byte"),
    "09_exercise_newer_bookmark_wins": (
        "from exercises import Arrival\n\n"
        "def newer_wins(current, arriving):\n"
        "    return arriving.content_bm > 0 and (current is None or (\n"
        "        arriving.token_issued, arriving.interrupted_at)\n"
        "        >= (current.token_issued, current.interrupted_at))",
        # The last request to arrive wins.
        "def newer_wins(current, arriving):\n    return True",
        "the portal keeps B, yours keeps A"),
}


def _with_answer(name: str, answer: str) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
    (stub,) = [c for c in nb.cells if "exercise" in c.metadata.get("tags", [])]
    assert "NotImplementedError" in stub.source  # the student starts from a stub
    stub.source = answer
    return nb


def test_every_exercise_notebook_is_tested() -> None:
    assert sorted(EXERCISES) == [p.stem for p in ALL_NOTEBOOKS if p not in NOTEBOOKS]


@pytest.mark.timeout(150)
@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_exercise_with_the_reference_answer_runs_live(
        name: str, jupyter_dirs: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    nb = _with_answer(name, EXERCISES[name][0])
    _run(nb, jupyter_dirs, monkeypatch)
    _assert_clean(nb)


@pytest.mark.timeout(150)
@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_exercise_check_catches_a_wrong_answer(
        name: str, jupyter_dirs: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    _, wrong, words = EXERCISES[name]
    with pytest.raises(nbclient.exceptions.CellExecutionError) as failed:
        _run(_with_answer(name, wrong), jupyter_dirs, monkeypatch)
    assert "ExerciseFailed" in str(failed.value) and words in str(failed.value)


# ---------------------------------------------------------------------------------------
# The machinery behind the notebooks, without a kernel


def test_a_new_stage_stops_the_one_the_previous_run_started(sample_dir: Path) -> None:
    """Re-running a notebook cell must not leave the old servers running."""
    from rtsp_resume import widgets

    first = widgets.Stage(sample_dir, key="rerun-test", quiet=False).start()
    data, port = first.data, first.system.streaming.port
    second = widgets.Stage(sample_dir, key="rerun-test", quiet=False).start()
    try:
        assert first.stopped and not data.exists()
        with pytest.raises(ConnectionRefusedError):  # its streaming server stopped listening
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        assert widgets.running()["rerun-test"] is second and not second.stopped
    finally:
        widgets.stop_all()
    assert second.stopped and "rerun-test" not in widgets.running()


def test_a_stopped_dashboard_disables_its_buttons_and_says_so(sample_dir: Path) -> None:
    """After stop() nothing may look live: a Connect or Cut pressed then would do nothing."""
    from rtsp_resume import widgets
    from rtsp_resume.widgets.display import STOPPED

    lab = widgets.HeartbeatLab(sample_dir)
    assert not (lab.connect_button.disabled or lab.link.toggle.disabled)
    lab.stop()
    assert lab.connect_button.disabled and lab.link.toggle.disabled
    assert lab.terminal.view.label.value == lab.terminal.bookmarks.outcome.value == STOPPED
    assert "run the first cell again" in STOPPED


def test_heartbeat_outcomes_pair_each_heartbeat_with_its_own_answer() -> None:
    from rtsp_resume.widgets import heartbeat_outcomes

    log = [(1.0, "sent", 7), (1.001, "answered", 7), (1.5, "sent", 8), (2.0, "sent", 9),
           (2.01, "answered", 9), (2.2, "life", None), (2.5, "sent", 10)]
    outcomes = heartbeat_outcomes(log)
    assert [(o.cseq, o.answered) for o in outcomes] == [
        (7, True), (8, False), (9, True), (10, False)]
    assert outcomes[2].answered_at == 2.01


def test_resume_check_counts_skipped_and_repeated_frames() -> None:
    from rtsp_resume.player import ShownFrame
    from rtsp_resume.widgets import ResumeCheck

    before = ShownFrame(index=80, pts=3.2, wallclock=0.0)

    def check(after_index: int) -> ResumeCheck:
        return ResumeCheck(before, ShownFrame(after_index, after_index / 25, 1.0), 0.0)

    assert (check(81).ok, check(81).skipped, check(81).repeated) == (True, 0, 0)
    assert (check(63).ok, check(63).skipped, check(63).repeated) == (True, 0, 18)
    assert (check(120).ok, check(120).skipped) == (False, 39)
    # Media without frame numbers: the presentation times decide.
    unnumbered = ResumeCheck(ShownFrame(None, 3.2, 0.0), ShownFrame(None, 4.0, 1.0), 0.0)
    assert unnumbered.skipped == 19


def _interruption(log: list[tuple[float, str, int | None]], last_life: float,
                  detected_at: float) -> object:
    from rtsp_resume.server import Interruption

    return Interruption(session_id="s1", content_id="sample", user_id="alice",
                        login_session="l1", play_token="t", position=3.0, estimator="confirmed",
                        frames_sent=3.6, confirmed=3.0, last_life=last_life,
                        detected_at=detected_at, transport="tcp", unanswered=2,
                        heartbeat_log=tuple(log))


LOG = [(100.5, "sent", 1), (100.51, "answered", 1), (101.0, "sent", 2),
       (101.01, "answered", 2), (101.2, "life", None), (101.5, "sent", 3), (102.0, "sent", 4)]


def test_the_timeline_is_drawn_from_plain_data() -> None:
    """Each heartbeat becomes a marker with its fate, the cut a red band, the verdict a
    labelled line; nothing but the data passed in is read."""
    from rtsp_resume.widgets.views import SessionTrace, timeline_svg

    event = _interruption(LOG, last_life=101.2, detected_at=102.7)
    trace = SessionTrace("s1", 100.0, "PLAY sample", list(LOG), event, live=False)  # type: ignore[arg-type]
    svg = timeline_svg([trace], [(101.3, "cut")], interval=0.5, timeout=1.5, now=103.0)
    assert svg.count(": answered after") == 2 and svg.count(": never answered") == 2
    assert "keep-alive / RTCP" in svg and "PLAY sample" in svg
    assert "interrupted" in svg and "silent 1.50 s ≥ timeout" in svg
    assert 'fill="#e53935" opacity="0.85"' in svg  # the link lane is red once cut
    assert "timeout 1.5 s" in svg


def test_the_timeline_keeps_a_long_session_with_its_cut_and_verdict_in_view() -> None:
    """A class talks for minutes before the cut: the whole session stays on the chart, the
    old answered heartbeats as one bar, and the verdict's label inside the picture."""
    import re

    from rtsp_resume.widgets.views import GREEN, SessionTrace, timeline_svg

    log: list[tuple[float, str, int | None]] = []
    for n in range(1, 360):  # three minutes of answered heartbeats, then the cut
        log += [(100 + n / 2, "sent", n), (100.01 + n / 2, "answered", n)]
    log += [(280.5, "sent", 400), (281.0, "sent", 401)]
    event = _interruption(log, last_life=279.51, detected_at=281.01)
    trace = SessionTrace("s1", 100.0, "PLAY lesson", log, event, live=False)  # type: ignore[arg-type]
    svg = timeline_svg([trace], [(280.0, "cut")], interval=0.5, timeout=1.5, now=281.2)
    assert "interrupted" in svg and ">cut<" in svg and "PLAY lesson" in svg
    assert svg.count(": answered after") <= 50  # only the last window's, one by one
    assert f'fill="{GREEN}" opacity="0.6"' in svg  # the rest as a bar
    label = re.search(r'<text x="([\d.]+)"[^>]*text-anchor="(\w+)"[^>]*>interrupted<', svg)
    assert label is not None and label.group(2) == "end"  # drawn left of the verdict line
    assert float(label.group(1)) <= 880


def test_heartbeat_summary_counts_what_the_server_saw() -> None:
    from rtsp_resume.widgets import HeartbeatSummary

    summary = HeartbeatSummary.of(_interruption(LOG, 101.2, 102.7), cut_at=101.3,  # type: ignore[arg-type]
                                  interval=0.5, timeout=1.5)
    assert (summary.answered_before_cut, summary.unanswered) == (2, 2)
    assert summary.silence == pytest.approx(1.5)
    assert summary.detected_after_cut == pytest.approx(1.4)


def test_chart_ticks_are_round_and_inside_the_range() -> None:
    from rtsp_resume.widgets.display import ticks

    assert ticks(0, 6.3) == [0, 1, 2, 3, 4, 5, 6]
    assert ticks(2.5, 26.5) == [5, 10, 15, 20, 25]
    assert [round(t, 3) for t in ticks(0.05, 0.5)] == [0.1, 0.2, 0.3, 0.4, 0.5]


def test_a_play_token_reads_without_the_key_but_a_tampered_one_fails() -> None:
    from rtsp_resume import tokens
    from rtsp_resume.widgets import decode_token, tamper

    key = b"k" * 32
    token = tokens.issue_play_token(key, user_id="alice", content_id="sample",
                                    login_session="l1", start=12.5, now=1000.0)
    said = decode_token(token)
    assert (said["UserID"], said["ContentID"], said["start (s)"]) == ("alice", "sample", 12.5)
    with pytest.raises(tokens.InvalidToken):
        tokens.verify_play_token(key, tamper(token), 1000.0)


# ---------------------------------------------------------------------------------------
# The exercises' checks and hooks, without a kernel


@pytest.fixture
def exercises(monkeypatch: pytest.MonkeyPatch) -> object:
    """``notebooks/exercises.py``, imported as the notebooks import it (from their folder)."""
    monkeypatch.syspath_prepend(str(NOTEBOOK_DIR))
    import exercises

    return exercises


def test_the_heartbeat_check_explains_why_a_wrong_verdict_is_wrong(exercises) -> None:  # type: ignore[no-untyped-def]
    assert "60 timelines" in exercises.check_verdict(exercises.reference_verdict)

    def revives(events, now, timeout):  # type: ignore[no-untyped-def]
        return now - max([0.0] + [t for t, kind in events if kind != "sent"]) >= timeout

    with pytest.raises(exercises.ExerciseFailed, match="a verdict is final"):
        exercises.check_verdict(revives)
    with pytest.raises(exercises.ExerciseFailed, match="are no sign of life"):
        exercises.check_verdict(lambda events, now, timeout: now - events[-1][0] >= timeout)


def test_the_student_monitor_asks_the_students_verdict_and_survives_its_bugs(exercises) -> None:  # type: ignore[no-untyped-def]
    from rtsp_resume.heartbeat import HeartbeatMonitor

    asked: list[tuple[list[tuple[float, str]], float]] = []

    def after_two_seconds(events, now, timeout):  # type: ignore[no-untyped-def]
        asked.append((events, now))
        return now >= 2.0

    monitor = exercises._StudentMonitor(HeartbeatMonitor(0.5, 1.5, now=100.0), after_two_seconds)
    monitor.heartbeat_sent(1, now=100.5)
    monitor.response_received(1, now=100.51)
    assert not monitor.tick(101.9).interrupted  # the package's rule would say interrupted...
    assert monitor.tick(102.0).interrupted and monitor.detected_at == 102.0  # ...not yet
    assert asked[-1] == ([(0.5, "sent"), (pytest.approx(0.51), "answered")], 2.0)

    def broken(events, now, timeout):  # type: ignore[no-untyped-def]
        raise ZeroDivisionError

    fallback = exercises._StudentMonitor(HeartbeatMonitor(0.5, 1.5, now=0.0), broken)
    assert not fallback.tick(1.0).interrupted  # the bug is swallowed once...
    assert fallback.tick(1.5).interrupted  # ...and the package's rule judges from then on


def test_the_fu_a_check_names_the_first_broken_packet(exercises) -> None:  # type: ignore[no-untyped-def]
    assert "16 NAL units" in exercises.check_fragments(exercises.reference_fragments)
    nal = bytes([0x65]) + bytes(250)
    good = exercises.reference_fragments(nal, 100)
    assert exercises.fragment_problem(nal, 100, good) is None
    every_e = [p[:1] + bytes([p[1] | 0x40]) + p[2:] for p in good]
    assert "packet 1 of 3: the FU header" in exercises.fragment_problem(nal, 100, every_e)
    assert "E (last only)" in exercises.fragment_problem(nal, 100, good[:2])  # the end lost
    assert "no packets" in exercises.fragment_problem(nal, 100, [])
    wrong_nri = [bytes([0x1C]) + p[1:] for p in good]
    assert "F and NRI bits (011)" in exercises.fragment_problem(nal, 100, wrong_nri)


def test_the_newer_wins_check_replays_the_portals_store(exercises) -> None:  # type: ignore[no-untyped-def]
    a, b = exercises.A, exercises.B
    assert exercises.portal_keeps([a, b, a]) == ["A", "B", "B"]  # the retry of A changes nothing

    def by_position(current, arriving):  # type: ignore[no-untyped-def]
        return current is None or arriving.content_bm > current.content_bm

    with pytest.raises(exercises.ExerciseFailed, match="portal keeps B, yours keeps A"):
        exercises.check_newer_wins(by_position)
