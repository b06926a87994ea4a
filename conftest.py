"""pytest configuration shared by the unit tests and the chapters run under nbval."""


def pytest_collection_modifyitems(items):
    # nbval waits only 5 s for a cell's output messages after the cell finishes; on a busy
    # machine that spurious limit can fail a correct chapter, so allow a minute.
    for item in items:
        if hasattr(item, "output_timeout"):
            item.output_timeout = 60
