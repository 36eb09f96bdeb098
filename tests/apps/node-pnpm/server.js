const http = require("http");
const ms = require("ms");

const started = Date.now();
http
  .createServer((req, res) => {
    res.end(`up for ${ms(Date.now() - started)}\n`);
  })
  .listen(Number(process.env.PORT || 5000));
