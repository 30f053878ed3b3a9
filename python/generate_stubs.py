"""Generates the gRPC stubs of proto/hostd/v1/host.proto into OUT_DIR/hostd/v1/.

    /usr/bin/python3 generate_stubs.py OUT_DIR [PROTO_ROOT]

Uses the system ``protoc`` with ``grpc_python_plugin`` (Debian: protobuf-compiler,
protobuf-compiler-grpc): Debian's grpc_tools bundles a protoc too old for proto3
``optional``. setup.py calls it at build time; the stubs are never checked in.
"""

import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PROTO_ROOT = os.path.join(HERE, "..", "proto")


def generate(out_dir: str, proto_root: str = DEFAULT_PROTO_ROOT) -> None:
    proto = os.path.join(proto_root, "hostd", "v1", "host.proto")
    if not os.path.exists(proto):
        sys.exit(f"generate_stubs: {proto} not found (build from the hostd source tree)")
    protoc = shutil.which("protoc")
    plugin = shutil.which("grpc_python_plugin")
    if protoc is None or plugin is None:
        sys.exit("generate_stubs: needs protoc and grpc_python_plugin "
                 "(apt-get install protobuf-compiler protobuf-compiler-grpc)")
    os.makedirs(os.path.join(out_dir, "hostd", "v1"), exist_ok=True)
    subprocess.run([protoc, f"-I{proto_root}", f"--python_out={out_dir}", f"--pyi_out={out_dir}",
                    f"--grpc_python_out={out_dir}", f"--plugin=protoc-gen-grpc_python={plugin}",
                    "hostd/v1/host.proto"], check=True)
    init = os.path.join(out_dir, "hostd", "v1", "__init__.py")
    with open(init, "w") as f:
        f.write('"""hostd.v1: messages and stubs generated from proto/hostd/v1/host.proto."""\n')


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    generate(*sys.argv[1:])
