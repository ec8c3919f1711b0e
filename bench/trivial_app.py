"""The yardstick for bench/scim_bench.py: the least a Flask JSON endpoint can do, served the same way."""
from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/ping")
def ping():
    return jsonify({"status": "ok"})
