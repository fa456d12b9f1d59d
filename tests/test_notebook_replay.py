"""Execute notebooks/replay_real_logs.ipynb on the real data sets (nbclient, the venv's kernel)."""
from tests.conftest import DATA, execute_notebook


def test_replay_notebook_executes(shared_data, monkeypatch):
    nb, text = execute_notebook("replay_real_logs.ipynb", monkeypatch, PROXITRACE_DATA=DATA)
    assert "72 placements, 34 within 2 m" in text
    assert "gaen-it" in text and "held-out" in text
    # durations from the log itself (issue 15): the replayed contact is the logged dwell
    for fmt in ("herald", "pcng", "mit"):
        after = [ln for ln in text.splitlines() if ln.startswith(fmt) and "the log's own (after)" in ln]
        assert len(after) == 1 and float(after[0].split()[8]) == 1.0, after
    assert "cwa-v2 29/29" in text
