"""The static in-browser page: ``lookalike export MODEL --web OUT_DIR`` (:func:`build_site`).

The page is ``lookalike serve``'s front end with its in-browser back end (ONNX Runtime Web
embeds, TensorFlow.js trains the pair head); a head trained there downloads as a head file
(:mod:`lookalike.model.head_file`) that ``lookalike compare --model MODEL --head FILE`` loads.
Importing this package imports neither torch nor onnxruntime.
"""

from __future__ import annotations

from lookalike.web.site import SITE_FORMAT, VENDOR_VERSIONS, build_site, find_vendor

__all__ = ["SITE_FORMAT", "VENDOR_VERSIONS", "build_site", "find_vendor"]
