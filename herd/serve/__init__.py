"""herd.serve: an OpenAI-compatible HTTP server over herd.model.engine (continuous batching, paged KV).

FastAPI and uvicorn come with the `serve` extra and are imported only here (`pip install 'herd[serve]'`).
"""
