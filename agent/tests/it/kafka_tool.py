"""kafka-python helper for the fleet tests (agent/tests/it/tansu.rs).

Subcommands (every answer is one JSON line on stdout; errors exit 1 with a message):
  produce BROKERS TOPIC RATE     stdin: "<partition>\t<payload>" lines; sends them at RATE msg/s
                                 (0: as fast as possible), waits for every ack, prints
                                 {"acked": n, "offsets": [[partition, offset], ...]}
  create-topic BROKERS TOPIC N   creates TOPIC with N partitions (KafkaAdminClient)
  committed BROKERS GROUP        the group's committed offsets with their metadata:
                                 {"<topic>/<partition>": [offset, metadata], ...}
  commit BROKERS GROUP TOPIC PARTITION OFFSET METADATA
                                 commits OFFSET with METADATA outside any generation
  dump BROKERS TOPIC             every message of TOPIC (through Fetch, until 2 s pass without
                                 one): {"messages": [[partition, offset, value], ...]}

Environment (agent/tests/it/real_cluster.rs):
  KAFKA_TOOL_CLIENT   a JSON object of extra kafka-python client arguments, given to every
                      client: compression_type, security_protocol, ssl_cafile, sasl_mechanism...
  KAFKA_TOOL_ENCODE   how `produce` encodes its payloads, which are then JSON objects (needs
                      fastavro): {"kind": "avro", "schema": "<.avsc>"} (one binary datum), or
                      {"kind": "confluent", "schemas": {"<id>": "<.avsc>", ...}} (magic byte 0,
                      4-byte big-endian id, datum; the id is the payload's "_schema_id", removed)
  KAFKA_TOOL_BREAK_CODEC
                      a codec (gzip, snappy, lz4, zstd) whose compressed batches `produce`
                      replaces with bytes that start like that codec's frame but do not
                      decompress: an undecodable batch that brokers store as it comes
"""

import json
import os
import struct
import sys
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.structs import OffsetAndMetadata


def client_args(**kwargs):
    """`kwargs` with KAFKA_TOOL_CLIENT's arguments over them."""
    kwargs.update(json.loads(os.environ.get("KAFKA_TOOL_CLIENT") or "null") or {})
    return kwargs


def encoder():
    """A function from a payload line to the message value, per KAFKA_TOOL_ENCODE."""
    spec = json.loads(os.environ.get("KAFKA_TOOL_ENCODE") or "null")
    if spec is None:
        return lambda payload: payload
    import io

    import fastavro

    def load(path):
        with open(path) as f:
            return fastavro.parse_schema(json.load(f))

    def datum(schema, record):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, schema, record)
        return buf.getvalue()

    if spec["kind"] == "avro":
        schema = load(spec["schema"])
        return lambda payload: datum(schema, json.loads(payload))
    if spec["kind"] == "confluent":
        schemas = {int(k): load(v) for k, v in spec["schemas"].items()}

        def framed(payload):
            record = json.loads(payload)
            sid = int(record.pop("_schema_id"))
            return b"\x00" + struct.pack(">I", sid) + datum(schemas[sid], record)

        return framed
    sys.exit("unknown KAFKA_TOOL_ENCODE kind %r" % spec["kind"])


def break_codec(codec):
    """Makes kafka-python's batches of `codec` undecodable (the batch header, its CRC and the
    record count stay right; the compressed records are garbage behind the codec's magic)."""
    import kafka.record.default_records as records

    magic = {"gzip": b"\x1f\x8b", "snappy": b"\x82SNAPPY\x00", "lz4": b"\x04\x22\x4d\x18",
             "zstd": b"\x28\xb5\x2f\xfd"}[codec]
    setattr(records, codec + "_encode", lambda data, *a, **k: magic + b"not a frame" * 4)


def produce(brokers, topic, rate):
    encode = encoder()
    if os.environ.get("KAFKA_TOOL_BREAK_CODEC"):
        break_codec(os.environ["KAFKA_TOOL_BREAK_CODEC"])
    p = KafkaProducer(
        **client_args(
            bootstrap_servers=brokers,
            acks="all",
            linger_ms=5,
            retries=5,
            max_in_flight_requests_per_connection=1,
            request_timeout_ms=30000,
        )
    )
    futures = []
    start = time.monotonic()
    for i, line in enumerate(sys.stdin.buffer):
        line = line.rstrip(b"\n")
        if not line:
            continue
        part, payload = line.split(b"\t", 1)
        if rate > 0:
            due = start + i / rate
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
        futures.append(p.send(topic, value=encode(payload), partition=int(part)))
    p.flush(timeout=60)
    offsets = []
    for f in futures:
        md = f.get(timeout=60)
        offsets.append([md.partition, md.offset])
    p.close()
    print(json.dumps({"acked": len(offsets), "offsets": offsets}))


def create_topic(brokers, topic, n):
    a = KafkaAdminClient(
        **client_args(bootstrap_servers=brokers, request_timeout_ms=30000)
    )
    a.create_topics([NewTopic(name=topic, num_partitions=n, replication_factor=1)])
    a.close()
    print(json.dumps({"created": topic, "partitions": n}))


def committed(brokers, group):
    a = KafkaAdminClient(
        **client_args(bootstrap_servers=brokers, request_timeout_ms=30000)
    )
    got = a.list_group_offsets({group: None})[group]
    a.close()
    out = {}
    for tp, om in got.items():
        out["%s/%d" % (tp.topic, tp.partition)] = [om.offset, om.metadata]
    print(json.dumps(out))


def commit(brokers, group, topic, partition, offset, metadata):
    c = KafkaConsumer(
        **client_args(
            bootstrap_servers=brokers, group_id=group, enable_auto_commit=False
        )
    )
    tp = TopicPartition(topic, partition)
    c.assign([tp])
    c.commit({tp: OffsetAndMetadata(offset, metadata, -1)})
    c.close(autocommit=False)
    print(json.dumps({"committed": offset, "metadata": metadata}))


def dump(brokers, topic):
    c = KafkaConsumer(
        **client_args(
            bootstrap_servers=brokers,
            enable_auto_commit=False,
            consumer_timeout_ms=2000,
        )
    )
    parts = c.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    out = [[m.partition, m.offset, m.value.decode("utf-8", "replace")] for m in c]
    c.close(autocommit=False)
    print(json.dumps({"messages": out}))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "produce":
        produce(args[0], args[1], float(args[2]))
    elif cmd == "create-topic":
        create_topic(args[0], args[1], int(args[2]))
    elif cmd == "committed":
        committed(args[0], args[1])
    elif cmd == "commit":
        commit(args[0], args[1], args[2], int(args[3]), int(args[4]), args[5])
    elif cmd == "dump":
        dump(args[0], args[1])
    else:
        sys.exit("unknown subcommand %r" % cmd)


if __name__ == "__main__":
    main()
