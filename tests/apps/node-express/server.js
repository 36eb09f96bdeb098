const path = require("path");
const express = require("express");

const app = express();
const build = require("./build/info.json");

app.get("/", (req, res) => {
  res.type("text").send(`Hello from Express, built with Node.js ${build.node}\n`);
});
app.use(express.static(path.join(__dirname, "public")));

const port = Number(process.env.PORT || 5000);
app.listen(port, () => console.log(`listening on ${port}`));
