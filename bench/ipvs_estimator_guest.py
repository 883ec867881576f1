"""The guest side of bench/ipvs-estimator: how long one destination add or
delete waits for the kernel, with the rate estimator on and off."""
import os
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scale_guest import NLM_F_ACK, NLM_F_REQUEST, IpvsPoller, nlattr  # noqa: E402

IPVS_CMD_NEW_DEST, IPVS_CMD_DEL_DEST = 5, 7
ESTIMATION = "/proc/sys/net/ipv4/vs/run_estimation"


def restore(n):
    rules = []
    for s in range(n):
        ip = f"10.{100 + s // 65536}.{(s // 256) % 256}.{s % 256}"
        rules.append(f"-A -t {ip}:80 -s rr")
        rules.extend(f"-a -t {ip}:80 -r 10.244.{d}.{s % 250 + 1}:8080 -m -w 1" for d in range(10))
    started = time.monotonic()
    subprocess.run(["ipvsadm", "-R"], input="\n".join(rules) + "\n", text=True, check=True)
    print(f"ipvsadm -R of {n} services x 10 destinations: {time.monotonic() - started:.1f} s", flush=True)


class DestinationWriter(IpvsPoller):
    """One destination of 10.100.0.1:80 added or deleted, acknowledged."""

    SERVICE = (nlattr(1, struct.pack("H", socket.AF_INET)) + nlattr(2, struct.pack("H", socket.IPPROTO_TCP))
               + nlattr(3, socket.inet_aton("10.100.0.1") + b"\0" * 12) + nlattr(4, struct.pack(">H", 80)))

    def timed(self, cmd, i):
        dest = (nlattr(1, socket.inet_aton(f"10.250.{i // 250}.{i % 250 + 1}") + b"\0" * 12)
                + nlattr(2, struct.pack(">H", 8080)) + nlattr(3, struct.pack("I", 0))  # masquerade
                + nlattr(4, struct.pack("I", 1)) + nlattr(5, struct.pack("I", 0)) + nlattr(6, struct.pack("I", 0)))
        body = struct.pack("BBH", cmd, 1, 0) + nlattr(1, self.SERVICE) + nlattr(2, dest)
        self.seq += 1
        started = time.monotonic()
        self.sock.send(struct.pack("IHHII", 16 + len(body), self.family, NLM_F_REQUEST | NLM_F_ACK, self.seq, 0)
                       + body)
        data = self.sock.recv(65536)
        took = time.monotonic() - started
        err = struct.unpack_from("i", data, 16)[0]
        if err != 0:
            raise OSError(-err, os.strerror(-err))
        return took


def measure(writer, setting, rounds):
    with open(ESTIMATION, "w") as f:
        f.write(f"{setting}\n")
    times = []
    for i in range(rounds):
        times.append(writer.timed(IPVS_CMD_NEW_DEST, i))
        times.append(writer.timed(IPVS_CMD_DEL_DEST, i))
        time.sleep(0.01)
    ms = sorted(t * 1000 for t in times)
    print(f"run_estimation={setting} ops={len(ms)} median_ms={ms[len(ms) // 2]:.2f} "
          f"p99_ms={ms[int(len(ms) * 0.99)]:.1f} max_ms={ms[-1]:.1f} over_10ms={sum(1 for x in ms if x > 10)}",
          flush=True)


def main():
    n, rounds = int(sys.argv[1]), int(sys.argv[2])
    if not os.path.exists(ESTIMATION):
        raise SystemExit(f"{ESTIMATION} is missing: this kernel cannot turn the estimator off")
    restore(n)
    writer = DestinationWriter()
    for setting in (1, 0, 1):
        measure(writer, setting, rounds)


if __name__ == "__main__":
    main()
