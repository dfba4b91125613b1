"""Offline batch reranking (`reranker batch`): the pipeline over Parquet / JSONL requests, in
process (`local`: sharded, resumable) or on Ray Data (`ray_engine`: an actor pool)."""
