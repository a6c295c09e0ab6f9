//! The index page (`GET /` without an upgrade): what this is, how to connect, live counters
//! (from `/stats`) and a live feed (a websocket to `/` from the page itself), which a person
//! can filter (`domain=`, `match=`, `dedup=1`) and watch matching certificates live.

/// The whole page: no external assets, so it works offline.
pub const INDEX: &str = r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>certstream</title>
<style>
  :root { --bg:#0f1419; --panel:#171d24; --text:#d8dee6; --muted:#8b97a5; --accent:#4fc3f7; --ok:#81c784; }
  * { box-sizing: border-box; }
  body { margin:0; font:15px/1.45 system-ui, -apple-system, Segoe UI, Roboto, sans-serif; background:var(--bg); color:var(--text); }
  header { padding:24px 32px 8px; }
  h1 { margin:0; font-size:28px; } h1 span { color:var(--accent); }
  header p { margin:6px 0 0; color:var(--muted); max-width:900px; }
  main { display:grid; grid-template-columns: minmax(320px, 1fr) 2fr; gap:16px; padding:16px 32px 32px; }
  section { background:var(--panel); border-radius:10px; padding:16px 18px; }
  h2 { margin:0 0 10px; font-size:16px; color:var(--accent); font-weight:600; }
  .stats { display:grid; grid-template-columns: 1fr 1fr; gap:10px; }
  .stat b { display:block; font-size:22px; font-variant-numeric: tabular-nums; }
  .stat small { color:var(--muted); }
  code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size:13px; }
  pre { background:#0b0f13; padding:10px; border-radius:6px; white-space:pre-wrap; word-break:break-all; margin:6px 0 12px; }
  table { width:100%; border-collapse:collapse; font-size:13px; }
  td, th { text-align:left; padding:3px 6px; border-bottom:1px solid #222b35; white-space:nowrap; overflow:hidden; text-overflow:ellipsis; max-width:360px; }
  th { color:var(--muted); font-weight:500; }
  table.wrap td { white-space:normal; }
  #feed td.domain { color:var(--ok); }
  #status { font-size:13px; color:var(--muted); }
  #status.live { color:var(--ok); }
  #filter { display:grid; grid-template-columns: 1fr 1fr auto auto; gap:8px; margin:0 0 10px; align-items:center; }
  #filter input[type=text] { background:#0b0f13; color:var(--text); border:1px solid #2a3441; border-radius:6px; padding:6px 8px; font:13px ui-monospace, monospace; }
  #filter button { background:var(--accent); color:#0b0f13; border:0; border-radius:6px; padding:6px 12px; font-weight:600; cursor:pointer; }
  #filter label { color:var(--muted); font-size:13px; white-space:nowrap; }
  #filter-note { color:var(--muted); font-size:13px; margin:0 0 8px; }
  @media (max-width: 900px) { main { grid-template-columns: 1fr; } }
</style>
</head>
<body>
<header>
  <h1><span>cert</span>stream</h1>
  <p>Every new TLS certificate logged to the public Certificate Transparency logs, parsed and
  broadcast live as JSON over websockets. Compatible with CertStream clients.</p>
</header>
<main>
  <div>
    <section>
      <h2>Live</h2>
      <div class="stats">
        <div class="stat"><b id="s-processed">–</b><small>certificates processed</small></div>
        <div class="stat"><b id="s-rate">–</b><small>certificates / second</small></div>
        <div class="stat"><b id="s-clients">–</b><small>connected clients</small></div>
        <div class="stat"><b id="s-logs">–</b><small>logs watched</small></div>
      </div>
      <p id="status">connecting…</p>
      <p id="role"></p>
    </section>
    <section style="margin-top:16px">
      <h2>Connect</h2>
      <table class="wrap">
        <tr><td><code>/</code></td><td>every certificate, without DER</td></tr>
        <tr><td><code>/full-stream</code></td><td>with <code>as_der</code> on every certificate</td></tr>
        <tr><td><code>/domains-only</code></td><td>just the domain names</td></tr>
        <tr><td><code>/latest.json</code>, <code>/example.json</code></td><td>recent messages</td></tr>
        <tr><td><code>/stats</code>, <code>/metrics</code></td><td>JSON and Prometheus counters</td></tr>
      </table>
      <pre id="py">pip install certstream
python -c "import certstream; certstream.listen_for_events(lambda m, c: print(m['data']['leaf_cert']['all_domains']), url='ws://HOST/')"</pre>
      <pre id="js">const ws = new WebSocket("ws://HOST/domains-only");
ws.onmessage = (e) =&gt; console.log(JSON.parse(e.data).data);</pre>
    </section>
    <section style="margin-top:16px">
      <h2>Logs</h2>
      <table id="logs"><tr><th>log</th><th>position</th><th>certs</th></tr></table>
    </section>
  </div>
  <section>
    <h2>Feed</h2>
    <form id="filter">
      <input type="text" id="f-domain" placeholder="domain: example.com, .example.org" aria-label="domain filter">
      <input type="text" id="f-match" placeholder="match: regex, e.g. paypal|login" aria-label="regex filter">
      <label><input type="checkbox" id="f-dedup"> dedup</label>
      <button type="submit">Filter</button>
    </form>
    <p id="filter-note">No filter: every certificate. <code>.example.com</code> is the name and everything under it; a regex is searched in each name.</p>
    <table id="feed"><thead><tr><th>seen</th><th>domains</th><th>issuer / log</th></tr></thead><tbody></tbody></table>
  </section>
</main>
<script>
(function () {
  const host = location.host;
  const wsBase = (location.protocol === "https:" ? "wss://" : "ws://") + host;
  document.getElementById("py").textContent = document.getElementById("py").textContent.replace("ws://HOST", wsBase);
  document.getElementById("js").textContent = document.getElementById("js").textContent.replace("ws://HOST", wsBase);
  const fmt = (n) => n.toLocaleString("en-US");
  let last = null;
  async function poll() {
    try {
      const s = await (await fetch("/stats", { cache: "no-store" })).json();
      document.getElementById("s-processed").textContent = fmt(s.processed_certificates);
      document.getElementById("s-clients").textContent = fmt(s.clients.total);
      const u = s.upstream;
      if (u && u.role !== "single") {
        document.getElementById("role").textContent = u.role + " node · NATS " + u.servers + " · stream " + u.stream +
          " · last sequence " + fmt(u.last_sequence) + (u.role === "edge" ? " · lag " + fmt(u.lag) : " · backlog " + fmt(u.backlog));
      }
      const active = s.logs.filter((l) => l.active);
      document.getElementById("s-logs").textContent = fmt(active.length);
      const now = performance.now();
      if (last) {
        const rate = (s.processed_certificates - last.n) / ((now - last.t) / 1000);
        document.getElementById("s-rate").textContent = rate.toFixed(1);
      }
      last = { n: s.processed_certificates, t: now };
      const t = document.getElementById("logs");
      t.innerHTML = "<tr><th>log</th><th>position</th><th>certs</th></tr>";
      for (const l of active) {
        const r = t.insertRow();
        r.insertCell().textContent = l.name;
        r.insertCell().textContent = fmt(l.position) + " / " + fmt(l.tree_size);
        r.insertCell().textContent = fmt(l.processed);
      }
    } catch (e) { /* keep trying */ }
  }
  poll(); setInterval(poll, 2000);
  const body = document.querySelector("#feed tbody");
  let shown = 0;
  let query = "";
  let current = null;
  let generation = 0;
  const params = new URLSearchParams(location.search);
  document.getElementById("f-domain").value = params.getAll("domain").join(",");
  document.getElementById("f-match").value = params.get("match") || "";
  document.getElementById("f-dedup").checked = params.get("dedup") === "1";
  function filterQuery() {
    const q = [];
    const d = document.getElementById("f-domain").value.replace(/\s+/g, "");
    const m = document.getElementById("f-match").value;
    if (d) q.push("domain=" + encodeURIComponent(d).replace(/%2C/g, ","));
    if (m) q.push("match=" + encodeURIComponent(m));
    if (document.getElementById("f-dedup").checked) q.push("dedup=1");
    return q.length ? "?" + q.join("&") : "";
  }
  document.getElementById("filter").addEventListener("submit", (e) => {
    e.preventDefault();
    query = filterQuery();
    history.replaceState(null, "", "/" + query);
    body.innerHTML = ""; shown = 0;
    document.getElementById("filter-note").textContent = query
      ? "Filtered by the server: only matching certificates are sent (" + decodeURIComponent(query.slice(1)) + ")."
      : "No filter: every certificate.";
    if (current) current.close();
    connect();
  });
  function connect() {
    const mine = ++generation;
    const url = wsBase + "/" + query;
    const ws = new WebSocket(url);
    current = ws;
    let opened = false;
    const status = document.getElementById("status");
    ws.onopen = () => { opened = true; status.textContent = "live: streaming from " + url; status.className = "live"; };
    ws.onclose = () => {
      if (mine !== generation) return;
      status.className = "";
      if (!opened && query) { status.textContent = "the server refused this filter (HTTP 400): check the domain names and the regex"; return; }
      status.textContent = "disconnected; reconnecting…"; setTimeout(() => { if (mine === generation) connect(); }, 2000);
    };
    ws.onmessage = (e) => {
      if (mine !== generation) return;
      const m = JSON.parse(e.data);
      if (m.message_type !== "certificate_update") return;
      const d = m.data;
      const r = body.insertRow(0);
      r.className = "cert";
      r.insertCell().textContent = new Date(d.seen * 1000).toLocaleTimeString();
      const dom = r.insertCell(); dom.className = "domain";
      dom.textContent = (d.leaf_cert.all_domains || []).join(", ") || "(no domain)";
      const issuer = (d.chain && d.chain[0] && d.chain[0].subject.O) || "";
      r.insertCell().textContent = (issuer ? issuer + " · " : "") + d.source.name;
      shown++;
      while (body.rows.length > 60) body.deleteRow(body.rows.length - 1);
      document.title = "certstream (" + shown + ")";
    };
  }
  query = filterQuery();
  connect();
})();
</script>
</body>
</html>
"##;
