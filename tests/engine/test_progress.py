"""Progress reporters: callback events, tqdm bar, silence."""

import io

from bitrix_core.progress import (
    CallbackProgress,
    NullProgress,
    Progress,
    TqdmProgress,
    make_progress,
)


def test_callback_receives_rows_total_and_done():
    events = []
    progress = make_progress(callback=events.append, description="crm.deal.list")
    assert isinstance(progress, CallbackProgress)
    progress.update(50)
    progress.set_total(120)
    progress.update(70)
    progress.close()
    progress.close()
    assert [(e.rows, e.total, e.done) for e in events] == [
        (50, None, False),
        (50, 120, False),
        (120, 120, False),
        (120, 120, True),
    ]
    assert events[-1].description == "crm.deal.list"
    assert events[-1].rate > 0


def test_verbose_false_is_silent_and_none_follows_the_tty(monkeypatch):
    assert isinstance(make_progress(verbose=False), NullProgress)
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert isinstance(make_progress(verbose=None), NullProgress)


def test_tqdm_bar_shows_rows_and_total():
    out = io.StringIO()
    bar = TqdmProgress(description="deals", file=out)
    assert isinstance(bar, Progress)
    bar.set_total(100)
    bar.update(100)
    bar.close()
    text = out.getvalue()
    assert "deals" in text and "100/100" in text and "rows" in text
