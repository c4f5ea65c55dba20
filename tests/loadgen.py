"""A constant load on a predictor endpoint, from its own process, recording every request.

    python tests/loadgen.py --url URL --concurrency 8 --out records.json [--host-header H]

Runs until SIGTERM (or ``--seconds``), then writes one JSON list of
``[start, end, status, revision, error]`` per request (times from ``time.time()``; status 0
and the exception's name when no answer came).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import time

import aiohttp


async def worker(session, url: str, headers: dict, stop: asyncio.Event, records: list, users: int) -> None:
    while not stop.is_set():
        body = {"instances": [{"user_id": random.randint(1, users), "k": 10}]}
        start = time.time()
        try:
            async with session.post(url, json=body, headers=headers) as answer:
                await answer.read()
                records.append([start, time.time(), answer.status, answer.headers.get("X-Reelops-Revision"), ""])
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            records.append([start, time.time(), 0, None, type(error).__name__])


async def main(args) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    if args.seconds:
        loop.call_later(args.seconds, stop.set)
    records: list = []
    headers = {"Host": args.host_header} if args.host_header else {}
    url = f"{args.url}/v1/models/{args.name}:predict"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30),
                                     connector=aiohttp.TCPConnector(limit=0)) as session:
        await asyncio.gather(*(worker(session, url, headers, stop, records, args.users)
                               for _ in range(args.concurrency)))
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(records, handle)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=0)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--name", default="movie-recommender")
    parser.add_argument("--host-header", default=None)
    asyncio.run(main(parser.parse_args()))
