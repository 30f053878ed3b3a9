#!/usr/bin/env python3
"""Writes the seed corpus under fuzz/corpus/<target>/. Deterministic: rerunning
gives the same files. Layouts follow channel/frame.cc and channel/message.cc:

  frame header (16 bytes, little-endian): 'h' 'd' version=1 type:u8 length:u32 seq:u64
  types: 1 hello, 2 welcome, 3 data, 4 ack, 5 close
  hello body (16):   session_id:u64 role:u8(1) 7 reserved zero bytes
  welcome body (24): incarnation:u64 delivered_seq:u64 resumed:u8(0/1) 7 reserved zero bytes
  data body:         kind:u8 reason:u8 len(dest,port,src,note):4*u16 reserved:u16
                     then dest, port, src, note, payload
"""
import os
import struct
import sys

HELLO, WELCOME, DATA, ACK, CLOSE = 1, 2, 3, 4, 5
INLINE_BODY = 16 * 1024


def header(ftype, length, seq, magic=b"hd", version=1):
    return magic + struct.pack("<BBIQ", version, ftype, length, seq)


def frame(ftype, seq, body=b""):
    return header(ftype, len(body), seq) + body


def hello(session_id, role=1):
    return struct.pack("<QB7x", session_id, role)


def welcome(incarnation, delivered_seq, resumed):
    return struct.pack("<QQB7x", incarnation, delivered_seq, resumed)


def message(dest, port, src, payload, kind=0, reason=0, note=b""):
    env = struct.pack("<BBHHHHH", kind, reason, len(dest), len(port), len(src), len(note), 0)
    return env + dest + port + src + note + payload


# frame_decoder_fuzzer prefix: max_body mode, max_body parameter, chunking, seed.
MAX_BYTE, MAX_4096, MAX_INLINE, MAX_DEFAULT = 0, 1, 2, 3


def decoder_input(mode, param, chunk, seed, stream):
    return bytes([mode, param, chunk, seed]) + stream


MSG = message(b"unix:@fe,trainer-3", b"inbox", b"tcp:127.0.0.1:4000", b"hello")
RETURNED = message(b"tcp:127.0.0.1:4000", b"inbox", b"unix:@fe,trainer-3", b"hello", kind=1, reason=1,
                   note=b"no proc named trainer-3")
SESSION = (frame(HELLO, 0, hello(0x1122334455667788)) + frame(WELCOME, 0, welcome(42, 0, 0)) +
           frame(DATA, 1, MSG) + frame(DATA, 2, message(b"local:7", b"p", b"", b"")) +
           frame(ACK, 2) + frame(CLOSE, 0, b"bye"))


# Protobuf wire encoding, for the control API's requests.
def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def ld(field, data):
    """A length-delimited field (string, bytes, message)."""
    if isinstance(data, str):
        data = data.encode()
    return varint(field << 3 | 2) + varint(len(data)) + data


def vi(field, n):
    """A varint field (integer, bool, enum)."""
    return varint(field << 3) + varint(n)


# HostService methods in declaration order (byte 0 of a grpc_service_fuzzer input).
METHODS = ["SpawnProc", "SpawnProcs", "GetProc", "ListProcs", "WaitProc", "TerminateProc", "KillProc",
           "TerminateAll", "WatchProcs", "StreamLogs", "SendMessage", "GetHostInfo", "CreateGroup",
           "DeleteGroup", "RestartProc", "BroadcastSignal", "GetTree"]


def rpc(method, body=b""):
    return bytes([METHODS.index(method)]) + body


CORPUS = {
    "frame_decoder_fuzzer": {
        "empty": decoder_input(MAX_DEFAULT, 0, 7, 0, b""),
        "session_whole": decoder_input(MAX_DEFAULT, 0, 7, 0, SESSION),
        "session_bytewise": decoder_input(MAX_4096, 255, 0, 0, SESSION),
        "session_random_reads": decoder_input(MAX_4096, 255, 0x86, 9, SESSION),
        "data_message": decoder_input(MAX_BYTE, 255, 0x85, 3, frame(DATA, 7, MSG)),
        "data_returned": decoder_input(MAX_4096, 255, 3, 1, frame(DATA, 8, RETURNED)),
        "data_bad_envelope": decoder_input(MAX_4096, 255, 7, 0, frame(DATA, 9, b"\x02\x00" + b"\x00" * 10)),
        "oversized_for_max": decoder_input(MAX_BYTE, 4, 7, 0, frame(CLOSE, 1, b"too long")),
        "bad_magic": decoder_input(MAX_DEFAULT, 0, 7, 0, frame(ACK, 1) + header(ACK, 0, 2, magic=b"xx")),
        "bad_version": decoder_input(MAX_DEFAULT, 0, 2, 0, header(ACK, 0, 1, version=2)),
        "bad_type": decoder_input(MAX_DEFAULT, 0, 4, 0, header(9, 0, 1)),
        "truncated_body": decoder_input(MAX_4096, 255, 3, 0, frame(DATA, 1, MSG)[:-3]),
        "truncated_header": decoder_input(MAX_DEFAULT, 0, 0, 0, frame(ACK, 1)[:10]),
        # Over kInlineBody: the decoder switches to a separate body buffer (body cut short here).
        "big_body_partial": decoder_input(MAX_INLINE, 255, 0x86, 5, header(DATA, INLINE_BODY + 100, 3) +
                                          message(b"local:1", b"p", b"local:2", b"x" * 2000)),
        # Chunking bit 6 repeats the stream to ~130 KiB: the big body completes and frames follow.
        "big_body_repeated": decoder_input(MAX_DEFAULT, 0, 0x46, 0, header(DATA, INLINE_BODY + 100, 3) +
                                           message(b"local:1", b"p", b"local:2", b"y" * 1000) + SESSION),
        "session_repeated": decoder_input(MAX_4096, 255, 0xc6, 2, SESSION),
    },
    "handshake_fuzzer": {
        "hello_body": hello(0x1122334455667788),
        "welcome_new": welcome(0xdeadbeef, 0, 0),
        "welcome_resumed": welcome(0xdeadbeef, 17, 1),
        "hello_frame": frame(HELLO, 0, hello(1)),
        "welcome_frame": frame(WELCOME, 0, welcome(7, 3, 1)),
        "header_small_max": header(CLOSE, 300, 5) + struct.pack("<I", 200),
        "hello_reserved_set": hello(5)[:9] + b"\x01" + b"\x00" * 6,
        "welcome_bad_flag": welcome(7, 0, 2),
    },
    "channel_addr_fuzzer": {
        "tcp_v4": b"tcp:127.0.0.1:4000",
        "tcp_v4_any": b"tcp:0.0.0.0:0",
        "tcp_v6": b"tcp:[::1]:4000",
        "tcp_v6_mapped": b"tcp:[::ffff:10.0.0.1]:65535",
        "unix_path": b"unix:/run/hostd/fe.sock",
        "unix_abstract": b"unix:@hostd-fe",
        "unix_any": b"unix:",
        "local_id": b"local:7",
        "local_max": b"local:18446744073709551615",
        "bad_hostname": b"tcp:localhost:80",
        "bad_v6_unbracketed": b"tcp:::1:80",
        "bad_unix_relative": b"unix:run/hostd.sock",
        "bad_port": b"tcp:1.2.3.4:65536",
        "bad_scheme": b"udp:1.2.3.4:53",
    },
    "grpc_service_fuzzer": {
        "spawn": rpc("SpawnProc", ld(1, "p0") + ld(2, ld(1, "echo"))),
        "spawn_in_group": rpc("SpawnProc", ld(1, "p1") + ld(2, ld(1, "x")) + ld(5, "g0")),
        "spawn_labels": rpc("SpawnProc", ld(1, "p2") + ld(2, ld(1, "x")) + ld(3, ld(1, "k") + ld(2, "v"))),
        "spawn_many": rpc("SpawnProcs", ld(1, ld(1, "p0") + ld(2, ld(1, "x"))) * 3),
        "get": rpc("GetProc", ld(1, "p0")),
        "list": rpc("ListProcs"),
        "wait": rpc("WaitProc", ld(1, "p0")),
        "terminate": rpc("TerminateProc", ld(1, "p0")),
        "kill": rpc("KillProc", ld(1, "p0")),
        "terminate_all": rpc("TerminateAll"),
        "watch": rpc("WatchProcs", ld(1, "p0")),
        "logs": rpc("StreamLogs", ld(1, "p0")),
        "send": rpc("SendMessage", ld(1, "p0") + ld(2, "echo") + ld(3, "hi")),
        "info": rpc("GetHostInfo"),
        "create_group": rpc("CreateGroup", ld(1, "g0") + vi(3, 1)),
        "delete_group": rpc("DeleteGroup", ld(1, "g0")),
        "restart": rpc("RestartProc", ld(1, "p0")),
        "broadcast": rpc("BroadcastSignal", ld(1, "sig")),
        "tree": rpc("GetTree"),
    },
}


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    for target, files in CORPUS.items():
        out = os.path.join(root, target)
        # Only the seeds are rewritten: inputs merged in from long runs stay.
        os.makedirs(out, exist_ok=True)
        for name, data in files.items():
            assert len(data) < 4096, name
            with open(os.path.join(out, name), "wb") as f:
                f.write(data)
    print(f"wrote {sum(len(f) for f in CORPUS.values())} files under {root}", file=sys.stderr)


if __name__ == "__main__":
    main()
