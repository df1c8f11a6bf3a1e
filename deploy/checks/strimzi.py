"""Structural checks of the Strimzi resources in a rendered manifest (no Kubernetes
schema covers custom resources offline): every Kafka, KafkaNodePool and KafkaTopic has
the fields Strimzi requires, with the right types, and the durability DVK relies on.

Usage: python strimzi.py RENDERED.yaml   (exit 1 with every problem listed)
"""

import sys

import jsonschema
import yaml

INT = {"type": "integer"}
STRING = {"type": "string"}

LISTENER = {
    "type": "object",
    "required": ["name", "port", "type", "tls"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9]{1,11}$"},
        "port": {"type": "integer", "minimum": 9092},
        "type": {"enum": ["internal", "route", "loadbalancer", "nodeport", "ingress", "cluster-ip"]},
        "tls": {"type": "boolean"},
    },
}

SCHEMAS = {
    "Kafka": {
        "type": "object",
        "required": ["apiVersion", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "kafka.strimzi.io/v1beta2"},
            "spec": {
                "type": "object",
                "required": ["kafka"],
                "properties": {
                    "kafka": {
                        "type": "object",
                        "required": ["listeners"],
                        "properties": {
                            "version": STRING,
                            "listeners": {"type": "array", "minItems": 1, "items": LISTENER},
                            "config": {"type": "object"},
                        },
                    },
                    "entityOperator": {"type": "object"},
                },
            },
        },
    },
    "KafkaNodePool": {
        "type": "object",
        "required": ["apiVersion", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "kafka.strimzi.io/v1beta2"},
            "metadata": {
                "type": "object",
                "required": ["labels"],
                "properties": {"labels": {"type": "object", "required": ["strimzi.io/cluster"]}},
            },
            "spec": {
                "type": "object",
                "required": ["replicas", "roles", "storage"],
                "properties": {
                    "replicas": {"type": "integer", "minimum": 3},
                    "roles": {"type": "array", "items": {"enum": ["controller", "broker"]}},
                    "storage": {"type": "object", "required": ["type"]},
                },
            },
        },
    },
    "KafkaTopic": {
        "type": "object",
        "required": ["apiVersion", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "kafka.strimzi.io/v1beta2"},
            "metadata": {
                "type": "object",
                "required": ["labels"],
                "properties": {"labels": {"type": "object", "required": ["strimzi.io/cluster"]}},
            },
            "spec": {
                "type": "object",
                "required": ["partitions", "replicas", "config"],
                "properties": {
                    "partitions": {"type": "integer", "minimum": 1},
                    "replicas": {"const": 3},
                    "config": {
                        "type": "object",
                        "required": ["min.insync.replicas", "retention.ms"],
                        "properties": {
                            "min.insync.replicas": {"const": 2},
                            "retention.ms": {"const": -1},
                            "retention.bytes": {"const": -1},
                        },
                    },
                },
            },
        },
    },
}


def main(path):
    docs = [d for d in yaml.safe_load_all(open(path, encoding="utf-8")) if d]
    problems = []
    seen = {}
    for d in docs:
        kind = d.get("kind")
        schema = SCHEMAS.get(kind)
        if schema is None:
            continue
        seen[kind] = seen.get(kind, 0) + 1
        name = d.get("metadata", {}).get("name", "?")
        for e in jsonschema.Draft202012Validator(schema).iter_errors(d):
            where = "/".join(str(p) for p in e.absolute_path) or "(root)"
            problems.append(f"{kind}/{name}: {where}: {e.message}")
    clusters = {d["metadata"]["name"] for d in docs if d.get("kind") == "Kafka"}
    for d in docs:
        if d.get("kind") in ("KafkaNodePool", "KafkaTopic"):
            cluster = d.get("metadata", {}).get("labels", {}).get("strimzi.io/cluster")
            if cluster not in clusters:
                problems.append(f"{d['kind']}/{d['metadata'].get('name')}: cluster {cluster!r} is not defined here")
    topics = {d["spec"].get("topicName", d["metadata"]["name"]) for d in docs if d.get("kind") == "KafkaTopic"}
    for t in ("dvk.registration.v1", "dvk.reporting.v1"):
        if t not in topics:
            problems.append(f"topic {t} is missing")
    for kind in SCHEMAS:
        if not seen.get(kind):
            problems.append(f"no {kind} resource")
    for p in problems:
        print(f"strimzi: {p}")
    if problems:
        sys.exit(1)
    print(f"strimzi: {sum(seen.values())} resources checked: {seen}")


if __name__ == "__main__":
    main(sys.argv[1])
