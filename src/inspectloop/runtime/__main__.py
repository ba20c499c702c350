"""``python -m inspectloop.runtime MODEL IMAGE... [--threads N]``: one JSON line per image.

Exit status: 0 when every image was classified, 1 when any image could not be read, 2 for a bad
model file or bad arguments. Errors go to stderr as one line, never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from inspectloop.errors import ModelFileError
from inspectloop.runtime.model import iter_predictions


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m inspectloop.runtime",
        description="Classify images with an exported inspectloop model; print one JSON line per image.")
    parser.add_argument("model", help="the exported .onnx model file")
    parser.add_argument("images", nargs="+", metavar="image", help="image files to classify")
    parser.add_argument("--threads", type=_positive_int, default=1, help="CPU threads per inference (default 1)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit status."""
    args = _parser().parse_args(argv)
    try:
        records = iter_predictions(args.model, args.images, threads=args.threads)
    except ModelFileError as exc:
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)  # one line, whatever onnxruntime said
        return 2
    failed = False
    for record in records:
        failed = failed or "error" in record
        print(json.dumps(record), flush=True)
        for warning in record.get("warnings", []):  # also in the JSON line; stderr so a person sees them
            print(f"warning: {record['image']}: {warning}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
