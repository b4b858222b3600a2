"""The worker's request loop: read a request, run it under a time limit, reply."""

from __future__ import annotations

import os
from typing import BinaryIO

import torch
import torch._dynamo  # what every optimizer imports on first use (seconds): here, before init

from . import wire
from .probes import PROBES
from .runtime import GraderTimeout, Runtime, error_info, time_limit


def serve(channel_in: BinaryIO, channel_out: BinaryIO, workdir: str, homework: str | None = None) -> None:
    """``homework``: the module of the homework's worker side (its capture rules and
    probes), from the set-up message."""
    runtime: Runtime | None = None
    while True:
        try:
            request = wire.read_message(channel_in)
        except EOFError:
            return
        op, args, timeout = request["op"], request.get("args", {}), request.get("timeout")
        reply: dict
        try:
            if op == "init":
                torch.set_num_threads(int(args.get("threads", 1)))
                write_files(workdir, args.get("files", {}))
                runtime = Runtime(
                    seed=int(args["seed"]),
                    output_cap=int(args["output_cap"]),
                    gpu=bool(args.get("gpu")),
                    homework=homework,
                )
                reply = {"ok": True, "result": {"workdir": workdir}}
            elif runtime is None:
                reply = {"ok": False, "error": {"type": "ProtocolError", "message": "init first"}}
            elif op == "run_cell":
                reply = {"ok": True, "result": runtime.run_cell(**args, timeout=timeout)}
            elif op in PROBES:
                with time_limit(timeout):
                    reply = {"ok": True, "result": PROBES[op](runtime, **args)}
            else:
                reply = {"ok": False, "error": {"type": "ProtocolError", "message": f"unknown op {op}"}}
        except GraderTimeout as exc:
            reply = {"ok": False, "error": {**error_info(exc), "type": "Timeout"}}
        except BaseException as exc:  # the student's code raised inside a probe
            reply = {"ok": False, "error": error_info(exc)}
        reply["id"] = request.get("id")
        try:
            payload = wire.encode(reply)
        except Exception as exc:  # a result the format cannot carry (a sparse tensor, say)
            error = {"type": "WireError", "message": f"the result cannot be sent: {type(exc).__name__}: {exc}"}
            payload = wire.encode({"ok": False, "error": error, "id": request.get("id")})
        channel_out.write(payload)
        channel_out.flush()


def write_files(workdir: str, files: dict[str, torch.Tensor]) -> None:
    """Place the submission's companion files (a checkpoint, say) in the working folder."""
    for rel, content in files.items():
        path = os.path.normpath(os.path.join(workdir, rel))
        if not path.startswith(workdir + os.sep):
            continue  # a name that climbs out of the working folder is dropped
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content.numpy().tobytes())
