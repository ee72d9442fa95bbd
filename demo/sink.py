#!/usr/bin/env python3
"""sink.py - a small SMTP server that writes every message it accepts into a directory

It stands where Postfix's reinjection service (127.0.0.1:10025) would, so that
postern can be tried without an MTA, and it is the capturing end of the
end-to-end specs. Each accepted message becomes two files in --dir:

    NNNNNN.eml    the message bytes exactly as received (dot-stuffing undone, CRLF kept)
    NNNNNN.json   the envelope: helo, mail_from with its parameters, rcpts with
                  theirs, the XFORWARD attributes, the peer

both written under a temporary name first and renamed, .json last, so a reader
that sees the .json sees the whole message.

Faults, for the no-loss specs (a fake used only for what it isolates):
  a recipient whose local part starts with "tempfail" gets 450, "reject" 550;
  --data-reply "451 4.3.0 no" answers the end of data with that instead of 250;
  --drop-in-data closes the connection after the first DATA bytes;
  --data-delay SECONDS waits before answering the end of data;
  --greeting "421 ..." refuses every connection at the greeting;
  --no-pipelining, --no-xforward, --no-8bitmime hide those extensions.

Listens on 127.0.0.1 (or the address given); stops on SIGTERM/SIGINT.
"""
import argparse
import json
import os
import signal
import socket
import socketserver
import sys
import threading
import time

counter_lock = threading.Lock()
counter = [0]


def next_name(directory):
    with counter_lock:
        counter[0] += 1
        return os.path.join(directory, "%06d-%d" % (counter[0], os.getpid()))


def parse_path(arg, keyword):
    """'FROM:<a> P=1' -> ('a', ['P=1']); None if malformed."""
    if not arg.upper().startswith(keyword):
        return None
    rest = arg[len(keyword):].lstrip()
    if not rest.startswith("<") or ">" not in rest:
        return None
    end = rest.index(">")
    return rest[1:end], rest[end + 1:].split()


class Handler(socketserver.StreamRequestHandler):
    timeout = 300

    def reply(self, text):
        self.wfile.write(text.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self):
        try:
            self.converse()
        except (ConnectionError, socket.timeout):
            pass  # the peer went away (posternd's start-up probe does, on purpose)

    def converse(self):
        opts = self.server.opts
        if opts.greeting:
            self.reply(opts.greeting)
            return
        self.reply("220 sink.localhost ESMTP postern demo sink")
        helo, xforward = None, {}
        mail_from, mail_params, rcpts = None, [], []
        while True:
            line = self.rfile.readline(65536)
            if not line:
                return
            cmd = line.rstrip(b"\r\n").decode("utf-8", "replace")
            verb, _, arg = cmd.partition(" ")
            verb = verb.upper()
            if verb in ("EHLO", "LHLO"):
                helo = arg
                ext = ["SIZE 104857600", "ENHANCEDSTATUSCODES", "DSN", "SMTPUTF8"]
                if not opts.no_pipelining:
                    ext.append("PIPELINING")
                if not opts.no_8bitmime:
                    ext.append("8BITMIME")
                if not opts.no_xforward:
                    ext.append("XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE LOGIN")
                lines = ["sink.localhost"] + ext
                out = ["250-" + x for x in lines[:-1]] + ["250 " + lines[-1]]
                self.wfile.write(("\r\n".join(out) + "\r\n").encode())
                self.wfile.flush()
            elif verb == "HELO":
                helo = arg
                self.reply("250 sink.localhost")
            elif verb == "XFORWARD" and not opts.no_xforward:
                for item in arg.split():
                    k, _, v = item.partition("=")
                    xforward[k.upper()] = v
                self.reply("250 2.0.0 Ok")
            elif verb == "MAIL":
                p = parse_path(arg, "FROM:")
                if p is None:
                    self.reply("501 5.5.4 Syntax: MAIL FROM:<address>")
                    continue
                mail_from, mail_params, rcpts = p[0], p[1], []
                self.reply("250 2.1.0 Ok")
            elif verb == "RCPT":
                p = parse_path(arg, "TO:")
                if p is None or mail_from is None:
                    self.reply("503 5.5.1 Error: need MAIL command")
                    continue
                local = p[0].split("@")[0].lower()
                if local.startswith("tempfail"):
                    self.reply("450 4.2.0 <%s>: Recipient address rejected: try later" % p[0])
                elif local.startswith("reject"):
                    self.reply("550 5.1.1 <%s>: Recipient address rejected: no such user" % p[0])
                else:
                    rcpts.append({"addr": p[0], "params": p[1]})
                    self.reply("250 2.1.5 Ok")
            elif verb == "DATA":
                if not rcpts:
                    self.reply("554 5.5.1 Error: no valid recipients")
                    continue
                self.reply("354 End data with <CR><LF>.<CR><LF>")
                data = self.read_data(opts)
                if data is None:
                    return
                if opts.data_delay:
                    time.sleep(opts.data_delay)
                if opts.data_reply:
                    self.reply(opts.data_reply)
                else:
                    qid = self.store(opts.dir, data, helo, xforward, mail_from, mail_params, rcpts)
                    self.reply("250 2.0.0 Ok: queued as %s" % qid)
                mail_from, mail_params, rcpts, xforward = None, [], [], {}
            elif verb == "RSET":
                mail_from, mail_params, rcpts, xforward = None, [], [], {}
                self.reply("250 2.0.0 Ok")
            elif verb == "NOOP":
                self.reply("250 2.0.0 Ok")
            elif verb == "QUIT":
                self.reply("221 2.0.0 Bye")
                return
            else:
                self.reply("502 5.5.2 Error: command not recognized")

    def read_data(self, opts):
        """The message up to the lone dot, unstuffed; None if the peer went away."""
        chunks = []
        while True:
            line = self.rfile.readline(1 << 20)
            if not line:
                return None
            if opts.drop_in_data:
                self.request.shutdown(socket.SHUT_RDWR)
                return None
            if line == b".\r\n":
                return b"".join(chunks)
            if line.startswith(b"."):
                line = line[1:]
            chunks.append(line)

    def store(self, directory, data, helo, xforward, mail_from, mail_params, rcpts):
        base = next_name(directory)
        with open(base + ".eml.tmp", "wb") as f:
            f.write(data)
        os.rename(base + ".eml.tmp", base + ".eml")
        env = {"helo": helo, "xforward": xforward, "mail_from": mail_from,
               "mail_params": mail_params, "rcpts": rcpts, "peer": self.client_address[0]}
        with open(base + ".json.tmp", "w") as f:
            json.dump(env, f)
        os.rename(base + ".json.tmp", base + ".json")
        return "SINK" + os.path.basename(base).replace("-", "X")


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 128


def endpoint(text):
    host, _, port = text.rpartition(":")
    return (host.strip("[]") or "127.0.0.1", int(port))


def main():
    ap = argparse.ArgumentParser(description="SMTP sink that stores what it receives")
    ap.add_argument("--listen", action="append", required=True, type=endpoint,
                    help="address:port to listen on (repeatable)")
    ap.add_argument("--dir", required=True, help="directory the messages are written to")
    ap.add_argument("--data-reply", help="answer the end of data with this reply instead")
    ap.add_argument("--drop-in-data", action="store_true", help="hang up during DATA")
    ap.add_argument("--data-delay", type=float, default=0, help="seconds before the data reply")
    ap.add_argument("--greeting", help="refuse connections with this greeting")
    ap.add_argument("--no-pipelining", action="store_true")
    ap.add_argument("--no-xforward", action="store_true")
    ap.add_argument("--no-8bitmime", action="store_true")
    ap.add_argument("--quiet", action="store_true")
    opts = ap.parse_args()
    os.makedirs(opts.dir, exist_ok=True)
    servers = []
    for ep in opts.listen:
        srv = Server(ep, Handler)
        srv.opts = opts
        servers.append(srv)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        if not opts.quiet:
            print("sink: listening on %s:%d, writing to %s" % (ep[0], ep[1], opts.dir), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(1):
        pass
    for srv in servers:
        srv.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
