"""The client side of bench/batch.sh and bench/batch-ab.sh: anvil's blocks
mined, the batches sent, and the mean time of sequential requests on one
keep-alive connection (Python's http.client)."""
import http.client
import json
import time


def post(port, body):
    """One request on a connection of its own; the answer is read and dropped."""
    c = http.client.HTTPConnection("127.0.0.1", port)
    c.request("POST", "/", body, {"content-type": "application/json"})
    c.getresponse().read()
    c.close()


def mine(port, blocks=200):
    """Has anvil on `port` mine `blocks` blocks (the batches ask for them)."""
    post(port, json.dumps({"jsonrpc": "2.0", "id": 1, "method": "anvil_mine", "params": [hex(blocks)]}))


def batch(k):
    """A client batch of `k` eth_getBlockByNumber calls with transactions
    (anvil's answer to 100 of them: about 175 KB)."""
    return json.dumps([{"jsonrpc": "2.0", "id": i, "method": "eth_getBlockByNumber", "params": [hex(i), True]} for i in range(k)])


def small_batch(k):
    """A client batch of `k` eth_chainId calls: answers of a few bytes each,
    so the time is the calls', not the bytes'."""
    return json.dumps([{"jsonrpc": "2.0", "id": i, "method": "eth_chainId", "params": []} for i in range(k)])


# The workloads `batch-ab.sh` can run (`BATCH=name`).
BATCHES = {"blocks": lambda: batch(100), "chainid": lambda: small_batch(100)}


def mean_us(port, body, n):
    """The mean time of `n` requests sent one after another, after 20 to warm up."""
    c = http.client.HTTPConnection("127.0.0.1", port)
    for _ in range(20):
        c.request("POST", "/", body, {"content-type": "application/json"})
        c.getresponse().read()
    t = time.perf_counter()
    for _ in range(n):
        c.request("POST", "/", body, {"content-type": "application/json"})
        c.getresponse().read()
    return (time.perf_counter() - t) / n * 1e6
