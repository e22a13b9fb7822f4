// Node's `ws` echo server for the battery's zoo: prints "PORT <n>", serves until stdin closes.
const { WebSocketServer } = require("ws");
const maxPayload = Number(process.argv[2] || 1048576);
const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, maxPayload });
wss.on("listening", () => console.log(`PORT ${wss.address().port}`));
wss.on("connection", (ws) => {
  ws.on("error", () => {});
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
});
process.stdin.resume();
process.stdin.on("end", () => process.exit(0));
