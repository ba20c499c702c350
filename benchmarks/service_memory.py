"""Server memory under large frames: 8 concurrent POSTs of a 9000x9000 PNG (about 80 KB each), then 8 of a
6000x6000 PNG (36 MP, under the default 40 MP limit, so decoded), against ``inspectloop serve`` on loopback.

    python -m benchmarks.service_memory     # JSON to benchmarks/results/service_memory.json

The server's RSS is read from /proc (VmRSS sampled every 10 ms, and VmHWM, the kernel's high-water
mark) before and during each burst. Goal: <= 400 MB above idle, and every request answered or refused
with a clear 413/422 (never a 500 or a dropped connection). Before issue 10, 8 x 9000x9000 took the
server from 197 MB to 1,268 MB RSS.
"""

from __future__ import annotations

import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.common import write_result
from benchmarks.hostile_corpus import png_of_zeros

TINY = Path(__file__).resolve().parents[1] / "tests" / "runtime" / "fixtures" / "tiny.onnx"
GOAL_MB = 400
MB = 1024 * 1024


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/{pid}/status")


def burst(url: str, token: str, pid: int, data: bytes, clients: int = 8) -> dict[str, Any]:
    """``clients`` concurrent POSTs of ``data``; statuses and the server's RSS peak above its idle RSS."""
    import httpx

    idle = _status_kb(pid, "VmRSS")
    peak = [idle]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _status_kb(pid, "VmRSS"))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()

    def post(index: int) -> tuple[int, str]:
        try:
            response = httpx.post(url, headers={"Authorization": f"Bearer {token}", "X-Request-ID": f"m-{index}-{time.time_ns()}"},
                                  files={"image": ("frame.png", data)}, data={"camera": "cam1"}, timeout=300)
            body = response.json()
            return response.status_code, str(body.get("error") or body.get("decision"))
        except Exception as exc:  # noqa: BLE001 -- a dropped connection is a result here
            return 0, f"{type(exc).__name__}: {exc}"

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(post, range(clients)))
    seconds = time.perf_counter() - started
    time.sleep(0.3)  # let the statistics thread finish with the frames
    stop.set()
    sampler.join()
    statuses = [status for status, _ in answers]
    return {"requests": clients, "upload_bytes": len(data), "statuses": statuses, "said": sorted({s for _, s in answers}),
            "idle_rss_mb": round(idle / 1024, 1), "peak_rss_mb": round(peak[0] / 1024, 1),
            "peak_above_idle_mb": round((peak[0] - idle) / 1024, 1), "seconds": round(seconds, 2),
            "all_clear": all(s == 200 or s in (413, 422) for s in statuses)}


def measure_memory() -> dict[str, Any]:
    """Both bursts against one fresh service (default settings: max_pixels 40 MP, decode budget 80 MP)."""
    from benchmarks.service_load import _free_port, start_service
    from inspectloop.people import add_user
    from inspectloop.workspace import init_workspace

    with tempfile.TemporaryDirectory() as name:
        root = Path(name) / "ws"
        workspace = init_workspace(root, name="memory")
        token = add_user(workspace, "qa", "reviewer")
        workspace.close()
        port = _free_port()
        process = start_service(root, TINY, port, Path(name) / "serve.log")
        try:
            url = f"http://127.0.0.1:{port}/v1/inspect"
            refused = burst(url, token, process.pid, png_of_zeros(9000, 9000))
            decoded = burst(url, token, process.pid, png_of_zeros(6000, 6000))
            high_water = round(_status_kb(process.pid, "VmHWM") / 1024, 1)
        finally:
            process.terminate()
            process.wait(30)
        tracebacks = (Path(name) / "serve.log").read_text(errors="replace").count("Traceback (most recent call last)")
    worst = max(refused["peak_above_idle_mb"], decoded["peak_above_idle_mb"])
    return {"burst_9000x9000": refused, "burst_6000x6000": decoded, "server_vm_hwm_mb": high_water,
            "server_tracebacks": tracebacks, "worst_peak_above_idle_mb": worst,
            "goal": f"<= {GOAL_MB} MB above idle; every request 200 or 413/422",
            "met": worst <= GOAL_MB and refused["all_clear"] and decoded["all_clear"],
            "settings": "defaults: max_pixels 40 MP (empty workspace), decode_pixels 2 x max_pixels"}


def main() -> None:
    result = measure_memory()
    for name in ("burst_9000x9000", "burst_6000x6000"):
        row = result[name]
        print(f"{name}: statuses {row['statuses']}; RSS idle {row['idle_rss_mb']} MB, peak {row['peak_rss_mb']} MB "
              f"(+{row['peak_above_idle_mb']} MB) in {row['seconds']} s")
    write_result("service_memory", result)


if __name__ == "__main__":
    main()
