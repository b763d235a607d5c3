"""Example iii worker in Python: registers py::greet with the engine at III_URL and serves it."""

import os
import signal

from iii_min import Worker

URL = os.environ.get("III_URL", "ws://localhost:49134")


def greet(data):
    name = data.get("name", "world") if isinstance(data, dict) else "world"
    if not isinstance(name, str):
        raise ValueError("name must be a string")
    return {"message": f"Hello, {name or 'world'}!", "from": "py-worker", "pid": os.getpid()}


def main() -> None:
    worker = Worker(URL, os.environ.get("III_WORKER_NAME", "py-worker"))
    worker.register_function("py::greet", greet, "Returns a greeting for input.name")
    print(f"registered py::greet (engine {URL})", flush=True)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stop())
    worker.run_forever()


if __name__ == "__main__":
    main()
