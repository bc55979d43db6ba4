// The Murmur dashboard: plain browser JavaScript, no build step. It works against the devnet's server
// (served at /, with fault buttons) and against a node's `--dashboard` route (served at /dashboard/,
// that one node's view): every URL below is relative to the page. One SSE stream, `api/stream`, carries
// `tick` (everything, about once a second), `block` (a node's commit as the server received it) and
// `fault` (a fault command the devnet ran) messages.

const HISTORY = 600
const COLORS = ['#5aa9f5', '#5fd37a', '#f0b43c', '#c77dff', '#f2616b', '#4dd0c8', '#ff8fab', '#b0c455']
const STATES = ['pending', 'assigned', 'filled', 'settled', 'refunded', 'expired']
/** A rollup status as the health chart's level (devnet/dashboard-feed.ts HEALTH_LEVEL). */
const HEALTH_LEVEL = { up: 2, degraded: 1, down: 0 }
const $ = (id) => document.getElementById(id)
const el = (tag, attrs = {}, text) => {
  const e = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v)
  if (text !== undefined) e.textContent = text
  return e
}
const svgEl = (tag, attrs = {}) => {
  const e = document.createElementNS('http://www.w3.org/2000/svg', tag)
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v)
  return e
}

// What a test or a benchmark reads: per block message, when the server received it and when the page
// had drawn it (next animation frame after the DOM update).
window.__murmurStats = { ticks: 0, blocks: [], lastTickMs: 0 }

const view = {
  mode: 'devnet',
  last: undefined,
  faults: [],
  history: { t: [], heights: [], gas: {}, baseFee: {}, health: {} },
  charts: {},
  selected: undefined,
  partition: new Map(),
}

function fmtMs(ms) {
  return ms === null || ms === undefined ? '-' : `${(ms / 1000).toFixed(1)} s`
}

function toast(text) {
  const t = $('toast')
  t.textContent = text
  t.classList.remove('hidden')
  clearTimeout(toast.timer)
  toast.timer = setTimeout(() => t.classList.add('hidden'), 4000)
}

async function control(cmd, args) {
  try {
    const res = await fetch('control', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ cmd, args }),
    })
    const body = await res.json()
    toast(res.ok ? `${cmd} ${args.join(' ')}: done` : `${cmd}: ${body.error?.message ?? res.status}`)
  } catch (err) {
    toast(`${cmd}: ${err.message}`)
  }
}

// ---- peer graph --------------------------------------------------------------------------------------

/** Connected components of the live nodes: one colour per group, so a partition shows as two colours. */
function groups(nodes) {
  const group = new Map()
  let next = 0
  for (const n of nodes) {
    if (n.status === 'down' || group.has(n.i)) continue
    const stack = [n.i]
    group.set(n.i, next)
    while (stack.length > 0) {
      const k = stack.pop()
      for (const m of nodes) {
        if (m.status === 'down' || group.has(m.i)) continue
        if (nodes[k].peers.includes(m.i) || m.peers.includes(k)) {
          group.set(m.i, next)
          stack.push(m.i)
        }
      }
    }
    next++
  }
  return { group, count: next }
}

function drawGraph(nodes) {
  const svg = $('graph')
  const n = nodes.length
  const pos = (i) => {
    const a = (2 * Math.PI * i) / Math.max(n, 1) - Math.PI / 2
    return [200 + 150 * Math.cos(a), 200 + 150 * Math.sin(a)]
  }
  const { group, count } = groups(nodes)
  const links = new Set()
  for (const a of nodes)
    for (const j of a.peers) if (a.i !== j) links.add(`${Math.min(a.i, j)}-${Math.max(a.i, j)}`)
  svg.replaceChildren()
  for (const key of [...links].sort()) {
    const [i, j] = key.split('-').map(Number)
    const [x1, y1] = pos(i)
    const [x2, y2] = pos(j)
    svg.append(svgEl('line', { x1, y1, x2, y2, 'data-testid': `link-${i}-${j}` }))
  }
  for (const node of nodes) {
    const [x, y] = pos(node.i)
    const g = svgEl('g', { class: 'node', 'data-testid': `node-${node.i}`, 'data-status': node.status })
    const fill =
      node.status === 'down' ? '#3a2226' : count > 1 ? COLORS[group.get(node.i) % COLORS.length] : '#2c4a66'
    g.append(svgEl('circle', { class: 'ring', cx: x, cy: y, r: 30 }))
    g.append(svgEl('circle', { class: 'body', cx: x, cy: y, r: 26, fill }))
    const label = svgEl('text', { x, y: y - 2 })
    label.textContent = `node ${node.i}`
    const h = svgEl('text', { x, y: y + 14, class: 'height', 'data-testid': `height-${node.i}` })
    h.textContent = node.height === null ? node.status : `h ${node.height}`
    g.append(label, h)
    g.addEventListener('click', () => showNode(node.i))
    svg.append(g)
  }
}

// ---- charts ------------------------------------------------------------------------------------------

/** Draws every fault of the timeline as a vertical line on a chart (the shared timeline). */
function faultMarks() {
  return {
    hooks: {
      draw: (u) => {
        const ctx = u.ctx
        ctx.save()
        ctx.strokeStyle = '#f2616b'
        ctx.fillStyle = '#f2616b'
        ctx.font = `${11 * devicePixelRatio}px system-ui`
        ctx.setLineDash([4, 4])
        for (const f of view.faults) {
          const x = u.valToPos(f.t / 1000, 'x', true)
          if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue
          ctx.beginPath()
          ctx.moveTo(x, u.bbox.top)
          ctx.lineTo(x, u.bbox.top + u.bbox.height)
          ctx.stroke()
          ctx.fillText(f.cmd, x + 3, u.bbox.top + 12 * devicePixelRatio)
        }
        ctx.restore()
      },
    },
  }
}

function makeChart(target, names, unit) {
  const width = Math.max(300, $(target).clientWidth || 480)
  const axis = { stroke: '#8593a3', grid: { stroke: '#222c37' }, ticks: { stroke: '#222c37' } }
  const opts = {
    width,
    height: 160,
    plugins: [faultMarks()],
    scales: { x: { time: true } },
    axes: [axis, { ...axis, size: 60, values: (_u, vals) => vals.map((v) => `${v}${unit}`) }],
    series: [
      {},
      ...names.map((name, k) => ({
        label: name,
        stroke: COLORS[k % COLORS.length],
        width: 1.5,
        spanGaps: false,
      })),
    ],
    legend: { live: false },
  }
  return new uPlot(opts, [[], ...names.map(() => [])], $(target))
}

function chartData(cols) {
  return [view.history.t.map((t) => t / 1000), ...cols]
}

function ensureCharts(tick) {
  const nodeNames = tick.nodes.map((n) => `node ${n.i}`)
  const chains = tick.rollups.map((r) => String(r.chainId))
  const key = `${nodeNames.length}/${chains.join(',')}`
  if (view.charts.key === key) return
  for (const c of ['heights', 'health', 'gas', 'fee']) view.charts[c]?.destroy()
  for (const id of ['chart-heights', 'chart-health', 'chart-gas', 'chart-fee']) $(id).replaceChildren()
  view.charts = {
    key,
    chains,
    heights: makeChart('chart-heights', nodeNames, ''),
    health: makeChart('chart-health', chains, ''),
    gas: makeChart('chart-gas', chains, '%'),
    fee: makeChart('chart-fee', chains, ''),
  }
}

function redrawCharts() {
  const h = view.history
  const c = view.charts
  if (c.heights === undefined) return
  c.heights.setData(chartData(c.heights.series.slice(1).map((_s, k) => h.heights[k] ?? [])))
  c.health.setData(chartData(c.chains.map((id) => h.health?.[id] ?? [])))
  c.gas.setData(chartData(c.chains.map((id) => h.gas[id] ?? [])))
  c.fee.setData(chartData(c.chains.map((id) => h.baseFee[id] ?? [])))
}

function recordHistory(tick) {
  const h = view.history
  // The stream's first tick may be the state's last point already.
  if (h.t.length > 0 && tick.t <= h.t[h.t.length - 1]) return
  const at = h.t.length
  const push = (xs, v) => {
    xs.push(v)
    if (xs.length > HISTORY) xs.splice(0, xs.length - HISTORY)
  }
  const column = (m, key) => {
    if (m[key] === undefined) m[key] = Array(at).fill(null)
    return m[key]
  }
  push(h.t, tick.t)
  for (const n of tick.nodes) push(column(h.heights, n.i), n.height)
  for (const r of tick.rollups) {
    const id = String(r.chainId)
    push(column(h.gas, id), typeof r.gasUsedRatioBps === 'number' ? r.gasUsedRatioBps / 100 : null)
    const wei = Number(r.baseFeeWei)
    push(column(h.baseFee, id), Number.isFinite(wei) ? wei / 1e9 : null)
    h.health ??= {}
    push(column(h.health, id), HEALTH_LEVEL[r.status] ?? null)
  }
}

// ---- lists -------------------------------------------------------------------------------------------

function drawIntents(it) {
  for (const s of STATES) {
    const b = document.querySelector(`[data-testid="intents-${s}"]`)
    if (b !== null) b.textContent = String(it[s] ?? 0)
  }
  document.querySelector('[data-testid="intents-latency"]').textContent =
    `fill p50 ${fmtMs(it.fillP50Ms)} / p90 ${fmtMs(it.fillP90Ms)}, settle p50 ${fmtMs(it.settleP50Ms)} / p90 ${fmtMs(it.settleP90Ms)}`
}

function drawRollups(rollups) {
  const box = $('rollups')
  box.replaceChildren()
  for (const r of rollups) {
    const card = el('div', { class: 'card', 'data-testid': `rollup-${r.chainId}`, 'data-status': r.status })
    card.append(el('b', {}, String(r.chainId)), el('span', {}, ` ${r.status}`), el('br'))
    const gas = typeof r.gasUsedRatioBps === 'number' ? `${(r.gasUsedRatioBps / 100).toFixed(1)} %` : '-'
    card.append(el('span', { class: 'small' }, `${r.type ?? ''} · gas ${gas} · ${r.blockTimeMs ?? '-'} ms`))
    card.addEventListener('click', () => showRollup(r.chainId))
    box.append(card)
  }
}

function drawStaking(staking, validators) {
  const pools = $('pools')
  pools.replaceChildren()
  const head = el('tr')
  for (const h of ['pool', 'validators', 'stake', 'alarm']) head.append(el('th', {}, h))
  pools.append(head)
  for (const p of staking?.pools ?? []) {
    const tr = el('tr', { 'data-testid': `pool-${p.chainId}` })
    tr.append(el('td', {}, p.chainId), el('td', {}, String(p.validators.length)), el('td', {}, p.total))
    tr.append(el('td', { class: p.alarm ? 'alarm' : 'ok' }, p.alarm ? 'ALARM' : 'ok'))
    pools.append(tr)
  }
  const moves = staking?.moves ?? []
  $('moves').textContent =
    `epoch ${staking?.epoch ?? '-'} · ${staking?.movesInForce ?? moves.length} stake move(s) in force` +
    (moves.length > 0 ? ` · latest ${JSON.stringify(moves[moves.length - 1]).slice(0, 120)}` : '')
  const vt = $('validators')
  vt.replaceChildren()
  const online = validators.filter((v) => v.online).length
  const jailed = validators.filter((v) => v.jailed).length
  $('val-summary').textContent = `${online} online · ${jailed} jailed · ${validators.length} in all`
  for (const v of validators) {
    const tr = el('tr')
    tr.append(el('td', {}, `${v.address.slice(0, 10)}…`), el('td', {}, v.power))
    tr.append(el('td', { class: v.online ? 'ok' : 'alarm' }, v.online ? 'online' : 'offline'))
    tr.append(el('td', { class: v.jailed ? 'alarm' : '' }, v.jailed ? 'jailed' : ''))
    vt.append(tr)
  }
}

function drawFaults() {
  const ol = $('faults')
  ol.replaceChildren()
  for (const f of view.faults.slice(-50).reverse()) {
    const li = el('li')
    li.append(
      el('span', {}, new Date(f.t).toISOString().slice(11, 19) + ' '),
      document.createTextNode(`${f.cmd} ${f.args.join(' ')}`),
    )
    ol.append(li)
  }
}

// ---- details panel -----------------------------------------------------------------------------------

function openDetails(title, body, buttons) {
  $('details-title').textContent = title
  $('details-body').textContent = typeof body === 'string' ? body : JSON.stringify(body, null, 2)
  const box = $('details-buttons')
  box.replaceChildren()
  for (const [label, cmd, args] of buttons) {
    const b = el('button', { type: 'button', 'data-testid': `btn-${cmd}` }, label)
    b.addEventListener('click', () => control(cmd, args))
    box.append(b)
  }
  $('details').classList.remove('hidden')
}

async function showNode(i) {
  view.selected = { kind: 'node', i }
  const buttons = [
    ['kill', 'kill', [String(i)]],
    ['restart', 'restart', [String(i)]],
  ]
  openDetails(`node ${i}`, 'loading…', buttons)
  const details = await fetch(`api/node/${i}`)
    .then((r) => r.json())
    .catch((err) => ({ error: err.message }))
  if (view.selected?.kind === 'node' && view.selected.i === i) openDetails(`node ${i}`, details, buttons)
}

function showRollup(chainId) {
  view.selected = { kind: 'rollup', chainId }
  const row = view.last?.rollups.find((r) => r.chainId === chainId)
  openDetails(`rollup ${chainId}`, row ?? {}, [
    ['rollup down', 'rollup-down', [String(chainId)]],
    ['rollup up', 'rollup-up', [String(chainId)]],
  ])
}

// ---- partition by dragging ---------------------------------------------------------------------------

function drawChips(nodes) {
  const known = [...document.querySelectorAll('.chip')].map((c) => c.dataset.node).join(',')
  if (known.split(',').length === nodes.length && known !== '') return
  $('chips').replaceChildren()
  for (const n of nodes) {
    const chip = el(
      'span',
      { class: 'chip', draggable: 'true', 'data-node': String(n.i), 'data-testid': `chip-${n.i}` },
      `node ${n.i}`,
    )
    chip.addEventListener('dragstart', (e) => e.dataTransfer.setData('text/plain', String(n.i)))
    $('chips').append(chip)
  }
}

function setupPartition() {
  for (const zone of document.querySelectorAll('.zone')) {
    zone.addEventListener('dragover', (e) => {
      e.preventDefault()
      zone.classList.add('over')
    })
    zone.addEventListener('dragleave', () => zone.classList.remove('over'))
    zone.addEventListener('drop', (e) => {
      e.preventDefault()
      zone.classList.remove('over')
      const i = e.dataTransfer.getData('text/plain')
      const chip = document.querySelector(`.chip[data-node="${i}"]`)
      if (chip !== null) zone.append(chip)
    })
  }
  $('btn-partition').addEventListener('click', () => {
    const members = (id) => [...$(id).querySelectorAll('.chip')].map((c) => c.dataset.node)
    const a = members('zone-a')
    const b = members('zone-b')
    if (a.length === 0 || b.length === 0) return toast('drag at least one node into each group')
    void control('partition', [a.join(','), b.join(',')])
  })
  $('btn-spike').addEventListener('click', () => void control('spike', ['20', '15']))
  $('btn-heal').addEventListener('click', () => {
    for (const chip of document.querySelectorAll('.zone .chip')) $('chips').append(chip)
    void control('heal', [])
  })
}

// ---- the stream --------------------------------------------------------------------------------------

function onTick(tick) {
  view.last = tick
  recordHistory(tick)
  ensureCharts(tick)
  drawGraph(tick.nodes)
  if (view.mode === 'devnet') drawChips(tick.nodes)
  drawRollups(tick.rollups)
  drawIntents(tick.intents)
  drawStaking(tick.staking, tick.validators ?? [])
  redrawCharts()
  window.__murmurStats.ticks++
  window.__murmurStats.lastTickMs = Date.now()
}

function onBlock(b) {
  const h = document.querySelector(`[data-testid="height-${b.i}"]`)
  if (h !== null) h.textContent = `h ${b.height}`
  const node = view.last?.nodes[b.i]
  if (node !== undefined) node.height = b.height
  requestAnimationFrame(() => {
    const s = window.__murmurStats.blocks
    s.push({ i: b.i, height: b.height, recvMs: b.recvMs, renderMs: Date.now() })
    if (s.length > 2000) s.splice(0, s.length - 2000)
  })
}

function connect() {
  const es = new EventSource('api/stream')
  es.onopen = () => {
    $('conn').textContent = 'live'
    $('conn').className = 'conn live'
  }
  es.onerror = () => {
    $('conn').textContent = 'connection lost, retrying…'
    $('conn').className = 'conn lost'
  }
  es.addEventListener('tick', (e) => onTick(JSON.parse(e.data)))
  es.addEventListener('block', (e) => onBlock(JSON.parse(e.data)))
  es.addEventListener('fault', (e) => {
    view.faults.push(JSON.parse(e.data))
    if (view.faults.length > 200) view.faults.shift()
    drawFaults()
    redrawCharts()
  })
}

function fitCharts() {
  const pairs = [
    ['heights', 'chart-heights'],
    ['gas', 'chart-gas'],
    ['fee', 'chart-fee'],
  ]
  for (const [c, id] of pairs)
    view.charts[c]?.setSize({ width: Math.max(300, $(id).clientWidth), height: 160 })
}

async function main() {
  window.addEventListener('resize', fitCharts)
  $('details-close').addEventListener('click', () => {
    view.selected = undefined
    $('details').classList.add('hidden')
  })
  const state = await fetch('api/state')
    .then((r) => r.json())
    .catch(() => ({}))
  view.mode = state.mode === 'node' ? 'node' : 'devnet'
  $('mode').textContent = view.mode === 'node' ? `node ${state.peerId ?? ''}`.slice(0, 40) : 'devnet'
  if (view.mode === 'node') document.body.classList.add('node-mode')
  else setupPartition()
  if (state.history !== undefined) view.history = state.history
  view.faults = state.faults ?? []
  drawFaults()
  connect()
}

void main()
