#!/usr/bin/env python3
"""A real Modbus server for the mapper tests, built on pymodbus (pinned in hack/test.sh).

    modbus_server.py --tcp PORT | --rtu DEVICE [--baud N]  --state FILE

Serves one register block (any unit id) with fixed initial values. Reads commands on stdin:
    set co|di|hr|ir ADDR VALUE
After every change (and every 100 ms) it writes the first 32 values of each area as JSON to FILE
(atomically), so a test can see what a client wrote without using a Modbus client of its own.
"""
import argparse
import asyncio
import json
import os
import sys

from pymodbus.datastore import (
    ModbusSequentialDataBlock,
    ModbusServerContext,
    ModbusSlaveContext,
)
from pymodbus.server import StartAsyncSerialServer, StartAsyncTcpServer

N = 64


def initial():
    co = [0] * N
    di = [0] * N
    hr = [0] * N
    ir = [0] * N
    ir[0] = 250  # temperature, scale 0.1 -> 25
    ir[2], ir[3] = 0x0001, 0x0002  # counter, register-swapped -> 0x00020001
    hr[10] = 40  # setpoint
    hr[20], hr[21] = 0x4F4B, 0x0000  # label "OK"
    di[1] = 1  # alarm
    return co, di, hr, ir


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tcp", type=int)
    ap.add_argument("--rtu")
    ap.add_argument("--baud", type=int, default=9600)
    ap.add_argument("--state", required=True)
    a = ap.parse_args()

    co, di, hr, ir = initial()
    slave = ModbusSlaveContext(
        co=ModbusSequentialDataBlock(1, co),
        di=ModbusSequentialDataBlock(1, di),
        hr=ModbusSequentialDataBlock(1, hr),
        ir=ModbusSequentialDataBlock(1, ir),
    )
    ctx = ModbusServerContext(slaves=slave, single=True)
    codes = {"co": 1, "di": 2, "hr": 3, "ir": 4}

    def dump():
        state = {k: [int(x) for x in slave.getValues(c, 0, 32)] for k, c in codes.items()}
        tmp = a.state + ".tmp"
        with open(tmp, "w") as f:
            json.dump(state, f)
        os.replace(tmp, a.state)

    async def dumper():
        while True:
            dump()
            await asyncio.sleep(0.1)

    async def commands():
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            parts = line.split()
            if len(parts) == 4 and parts[0] == "set" and parts[1] in codes:
                slave.setValues(codes[parts[1]], int(parts[2]), [int(parts[3])])
                dump()

    asyncio.create_task(dumper())
    asyncio.create_task(commands())
    if a.tcp:
        await StartAsyncTcpServer(context=ctx, address=("127.0.0.1", a.tcp))
    else:
        await StartAsyncSerialServer(
            context=ctx, port=a.rtu, baudrate=a.baud, framer="rtu", bytesize=8, parity="N", stopbits=1
        )


if __name__ == "__main__":
    asyncio.run(main())
