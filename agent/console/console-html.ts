// The node console's HTML shell: the panels page/console.ts fills, and its styles, with no external asset.

export const CONSOLE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>ambit node console</title>
<style>
  body { font: 13px/1.4 system-ui, sans-serif; margin: 0; background: #f5f6f8; color: #1d2330; }
  header { background: #1d2330; color: #fff; padding: 8px 16px; display: flex; gap: 16px; align-items: baseline; }
  header h1 { font-size: 16px; margin: 0; }
  #status { color: #9aa4b8; }
  main { display: grid; grid-template-columns: 3fr 2fr; gap: 12px; padding: 12px; }
  section { background: #fff; border: 1px solid #dde1e8; border-radius: 6px; padding: 8px 12px; overflow: auto; }
  section h2 { font-size: 14px; margin: 4px 0 8px; }
  #graph-panel { grid-row: span 2; }
  #programs-panel { grid-column: 1 / -1; max-height: 320px; }
  svg { width: 100%; height: 460px; }
  .node circle { fill: #e8f0fe; stroke: #3b6fd8; stroke-width: 1.5; }
  .node text { font-size: 11px; text-anchor: middle; }
  .edge line { stroke: #3b6fd8; stroke-width: 1.5; }
  .edge.plain line { stroke: #c77700; stroke-dasharray: 5 3; }
  .edge.errors line { stroke: #c62828; }
  .edge text { font-size: 10px; fill: #444; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: 2px 6px; border-bottom: 1px solid #eef0f4; }
  #edges td, #flows td, #certificates td:nth-child(n+2), #capture-links td:nth-child(1), #capture-links td:nth-child(3) { white-space: nowrap; }
  td { word-break: break-word; }
  th { font-weight: 600; color: #555; }
  .deny { color: #c62828; font-weight: 600; }
  .allow { color: #2e7d32; font-weight: 600; }
  form { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; }
  input { font: inherit; padding: 2px 4px; }
  #explain-result pre { white-space: pre-wrap; margin: 4px 0; max-height: 360px; overflow: auto; }
  .empty { color: #888; }
</style>
</head>
<body>
<header><h1>ambit node console</h1><span id="node"></span><span id="status">loading…</span></header>
<main>
  <section id="graph-panel"><h2>Traffic (this node's view; rates over the last poll)</h2><svg id="graph" role="img" aria-label="workload traffic graph"></svg>
    <table id="edges"><thead><tr><th>source</th><th>destination</th><th>rate</th><th>errors</th><th>bytes</th><th>mTLS</th></tr></thead><tbody></tbody></table></section>
  <section id="denials-panel"><h2>Recent denials</h2><table id="denials"><thead><tr><th>when</th><th>from</th><th>to</th><th>why</th><th>explained</th></tr></thead><tbody></tbody></table></section>
  <section id="explain-panel"><h2>Explain</h2>
    <form id="explain-form">
      <input name="source" placeholder="source (ns/pod or IP)" required size="18">
      <input name="destination" placeholder="destination (name.ns:port)" required size="22">
      <input name="http" placeholder="GET /path (optional)" size="14">
      <button type="submit">explain</button>
    </form>
    <div id="explain-result"></div></section>
  <section id="flows-panel"><h2>Open flows</h2><table id="flows"><thead><tr><th>dir</th><th>transport</th><th>workload</th><th>src</th><th>dst</th><th>peer identity</th></tr></thead><tbody></tbody></table></section>
  <section id="node-panel"><h2>Certificates and capture</h2>
    <table id="certificates"><thead><tr><th>identity</th><th>state</th><th>expires in</th></tr></thead><tbody></tbody></table>
    <table id="capture"><thead><tr><th>capture decision</th><th>count</th></tr></thead><tbody></tbody></table></section>
  <section id="programs-panel"><h2>eBPF programs attached</h2>
    <table id="capture-links"><thead><tr><th>program</th><th>attached to</th><th>link id</th><th>pin</th></tr></thead><tbody></tbody></table></section>
</main>
<script type="module" src="/console/console.js"></script>
</body>
</html>
`;
