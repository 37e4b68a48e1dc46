"""Serving L-Man: an OpenAI-compatible chat-completions API with dynamic batching (``app``, ``batching``), the
request schema (``schemas``), multi-turn prompts (``conversation``), the model behind it (``engine``), a web demo
(``static/``) and a load-test client (``loadtest``)."""
