"""Subscribe to a running streamtag daemon over ZeroMQ and print each estimate.

    pip install pyzmq
    python subscribe.py [tcp://127.0.0.1:5556] [--count N]

Works the same from any language with a ZeroMQ binding: SUB socket, connect, subscribe to a
topic prefix (``streamtag.`` for everything), receive two-part messages [topic, JSON].
"""

import json
import sys

import zmq

endpoint = next((a for a in sys.argv[1:] if a.startswith("tcp://")), "tcp://127.0.0.1:5556")
count = int(sys.argv[sys.argv.index("--count") + 1]) if "--count" in sys.argv else None

sock = zmq.Context().socket(zmq.SUB)
sock.connect(endpoint)
sock.setsockopt(zmq.SUBSCRIBE, b"streamtag.estimate")
sock.setsockopt(zmq.SUBSCRIBE, b"streamtag.meta")

seen = 0
while count is None or seen < count:
    topic, payload = sock.recv_multipart()
    msg = json.loads(payload)
    if topic == b"streamtag.meta":
        classes = [h for h in msg.get("heads", [])]
        print(f"connected: checkpoint {msg.get('checkpoint')}, heads {classes}", flush=True)
        continue
    e, i = msg.get("emotion", {}), msg.get("instrument", {})
    print(f"t={msg['t']:7.2f}s  {msg['stream']}  level {msg['level_db']:6.1f} dB  "
          f"valence {e.get('valence', 0):+.2f} arousal {e.get('arousal', 0):+.2f} "
          f"({e.get('label', '-')})  instrument {i.get('top', '-')} {i.get('confidence', 0):.2f}",
          flush=True)
    seen += 1
