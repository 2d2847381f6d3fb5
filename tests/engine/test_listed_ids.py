"""ListedIds: the count page's ids checked off as rows arrive, before and after it answers."""

from bitrix_core.pagination.listed import ListedIds


def test_rows_delivered_before_the_count_answered_are_checked_off_too() -> None:
    listed = ListedIds()
    listed.delivered([5, None, 7])  # the walk's first pages came before the count
    assert listed.unseen == set()  # nothing to say before the count answered
    listed.page.update({4, 5, 6, 7})
    listed.resolve()
    assert listed.unseen == {4, 6}
    listed.delivered([6, 8])
    listed.resolve()  # a second resolve keeps what was checked off
    assert listed.unseen == {4}


def test_a_count_that_never_answered_lists_nothing() -> None:
    listed = ListedIds()
    listed.delivered([1, 2])
    listed.resolve()
    assert listed.unseen == set()
