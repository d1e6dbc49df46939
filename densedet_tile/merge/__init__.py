"""Merging per-tile detections into one global set (seam repair, WBF, NMS)."""
