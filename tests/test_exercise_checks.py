"""A lesson's exercise self-check, run on its own: it passes the folded solution and fails near
misses with a sentence that names the expected value and how to get it.

The check cell and the solution cell are read from the source notebook
(``instructor/source/``) and executed with the few lesson variables they use, made by hand
here, so no server runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import nbformat
import pytest

import wslab
from wslab.course.checks import CheckFailed

ROOT = Path(__file__).resolve().parent.parent
LESSON_04 = ROOT / "instructor" / "source" / "04-measure-push-against-polling.ipynb"


def exercise_cells(path: Path, label: str) -> tuple[str, str]:
    """(solution, check) sources of exercise ``label`` in a source lesson; the check without its hidden tests."""
    nb = nbformat.read(path, as_version=4)
    by_id = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in nb.cells if c.cell_type == "code"}
    grade_id = "ex-" + label.replace(".", "-")
    return by_id[grade_id], by_id[grade_id + "-check"].split("### BEGIN HIDDEN TESTS")[0]


def saved_run(folder: Path, name: str, latencies: dict[str, list[float]]) -> tuple[Path, wslab.Results]:
    """A Results with these latencies, saved under ``folder/name`` (what ``results.save`` writes)."""
    run = wslab.Results(
        wslab.ExperimentConfig(events=max(map(len, latencies.values())), transports=list(latencies)),
        {key: wslab.TransportResult(key, len(ms), latencies_ms=ms, seqs=list(range(1, len(ms) + 1)))
         for key, ms in latencies.items()},
    )
    return run.save(folder / name), run


def lesson_04_names(tmp_path: Path) -> dict[str, Any]:
    """What exercise 4.4's check uses from the lesson: ``path`` (section 3's saved run) and ``blocked`` (section 7)."""
    path, _ = saved_run(tmp_path, "calm", {"websocket": [0.2, 0.3, 0.3, 0.4, 1.2]})
    _, blocked = saved_run(tmp_path, "blocked", {"websocket": [0.2, 0.3, 4.0, 0.4, 19.0, 0.5]})
    return {"wslab": wslab, "path": path, "blocked": blocked}


def test_exercise_4_4s_check_passes_the_folded_solution(tmp_path, capsys):
    """Lesson 04, exercise 4.4: the share of a saved run's events above a latency threshold."""
    solution, check = exercise_cells(LESSON_04, "4.4")
    names = lesson_04_names(tmp_path)
    exec(solution, names)  # noqa: S102 - the lesson's own solution cell
    exec(check, names)  # noqa: S102 - the lesson's own check cell
    out = capsys.readouterr().out
    assert "✓ Exercise 4.4 passed" in out
    assert "above 1 ms: 20% of the events with the loop free (section 3), 33% with it blocked (section 7)" in out


def _latencies(path, transport):
    return wslab.load_results(path)[transport].latencies_ms


#: Near misses a learner writes, and the words the check's failure must hold.
WRONG: dict[str, tuple[Callable[..., Any], list[str]]] = {
    "a count": (lambda path, transport, t: sum(ms > t for ms in _latencies(path, transport)),
                ['share_slower_than(path, "websocket", 1) was 3', "expected 0.375", "a count of events",
                 "divide it by 8"]),
    "a percentage": (lambda path, transport, t: 100 * sum(ms > t for ms in _latencies(path, transport))
                     / len(_latencies(path, transport)),
                     ["was 37.5", "expected 0.375", "a percentage: return a fraction from 0 to 1"]),
    "the share below": (lambda path, transport, t: sum(ms <= t for ms in _latencies(path, transport))
                        / len(_latencies(path, transport)),
                        ["was 0.625", "expected 0.375", "the tail is 1 minus it"]),
    "always the WebSocket": (lambda path, transport, t: sum(ms > t for ms in _latencies(path, "websocket"))
                             / len(_latencies(path, "websocket")),
                             ['share_slower_than(path, "sse", 1) was 0.375', "expected 0.125",
                              'count the latencies in load_results(path)["sse"].latencies_ms that are above 1 ms']),
    "nothing returned": (lambda path, transport, t: None,
                         ["returned NoneType None", "return a number from 0 to 1 (expected 0.375)"]),
}


@pytest.mark.parametrize("wrong", list(WRONG))
def test_exercise_4_4s_check_fails_a_near_miss_and_says_what_was_expected_and_how(wrong, tmp_path):
    """Lesson 04, exercise 4.4: each near miss fails in one sentence naming the expected share."""
    _, check = exercise_cells(LESSON_04, "4.4")
    answer, words = WRONG[wrong]
    names = {**lesson_04_names(tmp_path), "share_slower_than": answer}
    with pytest.raises(CheckFailed) as failure:
        exec(check, names)  # noqa: S102 - the lesson's own check cell
    message = str(failure.value)
    assert message.startswith("Exercise 4.4: ") and "\n" not in message
    for word in words:
        assert word in message, message
