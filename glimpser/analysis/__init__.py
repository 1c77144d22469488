"""Seeing: motion and change detection, the vision AI, rules that raise events, and summaries.

- schemas.py: per-stream analysis settings and rules (used by forms, import and workers);
- motion.py: change detection on snapshots (OpenCV + numpy), state kept in Redis;
- ai.py: the OpenAI-compatible client with budget, cache, retries and usage records;
- rules.py: which analysis results become events;
- pipeline.py: the analysis job for one snapshot, tying the above together;
- summaries.py: AI summaries of time windows.
"""
