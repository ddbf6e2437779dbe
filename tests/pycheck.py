"""Pass/fail bookkeeping shared by the Python tests: check() prints one line per assertion and keeps
the failures; summary() prints the count and returns the exit code (0 when all passed)."""

failures = []


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg, flush=True)
    if not cond:
        failures.append(msg)


def summary():
    if failures:
        print(f"{len(failures)} failed")
        return 1
    print("all passed")
    return 0
