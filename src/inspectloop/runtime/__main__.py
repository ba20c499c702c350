"""``python -m inspectloop.runtime MODEL IMAGE... [--threads N] [--trusted-key FILE] [--backend B]``: one JSON line
per image.

Exit status: 0 when every image was classified, 1 when any image could not be read, 2 for a bad
model file (or one not signed by a trusted key), a backend that cannot run it, or bad arguments. Errors go to stderr as one line,
never as a traceback. Trusted keys come from ``--trusted-key`` (repeatable) or, when none is given,
``$INSPECTLOOP_TRUSTED_KEYS``; without any, a model whose origin is not verified runs with one
warning line on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from inspectloop.errors import BackendError, MissingExtraError, ModelFileError
from inspectloop.runtime.backends import BACKEND_ENV, BACKENDS
from inspectloop.runtime.model import EdgeModel, predict_records
from inspectloop.runtime.signing import TRUSTED_KEYS_ENV, trusted_key_paths_from_env


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
    parser.add_argument("--trusted-key", action="append", default=[], metavar="FILE",
                        help="public key (PEM) whose signature a model must carry; repeatable "
                             f"(default: the files in ${TRUSTED_KEYS_ENV}, separated like PATH)")
    parser.add_argument("--backend", choices=BACKENDS, default=None,
                        help=f"what infers (default: ${BACKEND_ENV}, else auto: OpenVINO when installed and in "
                             "parity with onnxruntime at load)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit status."""
    args = _parser().parse_args(argv)
    keys = args.trusted_key or trusted_key_paths_from_env()
    try:
        model = EdgeModel(args.model, threads=args.threads, trusted_keys=keys, backend=args.backend)
    except (ModelFileError, BackendError, MissingExtraError) as exc:
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)  # one line, whatever onnxruntime said
        return 2
    warning = model.signature.warning()
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    failed = False
    for record in predict_records(model, args.images):
        failed = failed or "error" in record
        print(json.dumps(record), flush=True)
        for warning in record.get("warnings", []):  # also in the JSON line; stderr so a person sees them
            print(f"warning: {record['image']}: {warning}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
