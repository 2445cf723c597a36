"""The submission portal (`perfxl serve`): units hand in on a page and see their mistakes at once; the
consolidator watches 报送情况 fill in and pulls the summary. A second front end on the same ledger and
the same engine as `perfxl merge`, not a second system.

- `store`: uploads kept content-addressed beside the ledger, checked by the merge's own worker pool, and
  the board computed with the merge's rule for which version counts;
- `auth`: access codes (hashed), signed session tokens, CSRF, sign-in throttling;
- `app`: the Starlette application, its JSON API and its server-rendered Chinese pages.

Needs the `serve` extra: `pip install "perfxl[serve]"`.
"""
