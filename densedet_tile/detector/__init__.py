"""Detectors: the protocol, the built-in default model and adapters for other frameworks.

Framework imports (mmdet, onnxruntime) stay inside each adapter module so that importing this
package stays light.
"""

from .base import Detector, input_size_of, resolve_device

__all__ = ["Detector", "input_size_of", "resolve_device"]
