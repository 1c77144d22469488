"""Capture: when it runs (scheduling), the job body (run), persistent RTSP readers (readers)
and live-view frames (live)."""
