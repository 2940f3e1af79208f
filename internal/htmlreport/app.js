// kube-apisnoop's HTML report. It reads a coverage.Report as the JSON
// rendering has it (embedded, or fetched from the results API on a live
// page) or a coverage diff, and draws the cards, the sunburst and the tables.
// No network access but the live page's own results URL.
(function () {
  'use strict';

  var config = JSON.parse(document.getElementById('snoop-config').textContent);
  var embedded = JSON.parse(document.getElementById('snoop-data').textContent);

  // What the browser tests read: the last data drawn and the chart.
  var state = { data: null, chart: null, renders: 0, tables: {} };
  window.snoopReport = state;

  var COLORS = {
    hit: '#2e7d32', untested: '#d84315', ineligible: '#9e9e9e',
    gained: '#2e7d32', lost: '#c62828', both: '#90a4ae',
    stable: '#1565c0', beta: '#6a1b9a', alpha: '#00838f', deprecated: '#616161'
  };

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    if (attrs) {
      for (var k in attrs) {
        if (k === 'text') e.textContent = attrs[k];
        else if (k === 'class') e.className = attrs[k];
        else e.setAttribute(k, attrs[k]);
      }
    }
    (children || []).forEach(function (c) { if (c != null) e.appendChild(typeof c === 'string' ? document.createTextNode(c) : c); });
    return e;
  }

  function counts(m) {
    if (!m) return '';
    return Object.keys(m).sort().map(function (k) { return k + '=' + m[k]; }).join(' ');
  }

  function pct(p) { return (Math.round((p || 0) * 10) / 10).toFixed(1) + '%'; }

  // apiParts splits an operation's path the way the catalog does: group
  // ("core" for /api/v1) and version from the path, the resource after them
  // skipping watch/ and namespaces/{namespace}/, with its subresource.
  function apiParts(path) {
    var s = path.split('/').filter(function (x) { return x !== ''; });
    var group, version, rest;
    if (s[0] === 'api' && s.length >= 2) { group = 'core'; version = s[1]; rest = s.slice(2); }
    else if (s[0] === 'apis' && s.length >= 3) { group = s[1]; version = s[2]; rest = s.slice(3); }
    else if (s[0] === 'apis' && s.length === 2) { return { group: s[1], version: '(discovery)', resource: '(discovery)' }; }
    else if (s[0] === 'api' || s[0] === 'apis') { return { group: '(discovery)', version: '(discovery)', resource: '(discovery)' }; }
    else { return { group: '(non-resource)', version: '-', resource: '/' + (s[0] || '') }; }
    if (rest[0] === 'watch') rest = rest.slice(1);
    if (rest[0] === 'namespaces' && rest.length > 2 && rest[1] === '{namespace}') rest = rest.slice(2);
    if (rest.length === 0) return { group: group, version: version, resource: '(discovery)' };
    var resource = rest[0];
    if (rest.length >= 3 && rest[1].charAt(0) === '{') resource += '/' + rest[2];
    return { group: group, version: version, resource: resource };
  }

  function opState(op) {
    if (op.hits > 0) return 'hit';
    return op.eligibility === 'eligible' ? 'untested' : 'ineligible';
  }

  // tint mixes a #rrggbb colour with white: 0 keeps it, 1 is white.
  function tint(hex, amount) {
    var n = parseInt(hex.slice(1), 16), out = '#';
    [16, 8, 0].forEach(function (shift) {
      var c = (n >> shift) & 255;
      c = Math.round(c + (255 - c) * amount);
      out += (c < 16 ? '0' : '') + c.toString(16);
    });
    return out;
  }

  function levelOf(op) { return op.deprecated ? 'deprecated' : op.level; }

  // tree nests leaves (already coloured) by level, group, version and
  // resource for the sunburst.
  function tree(leaves, keyOf) {
    var root = { children: [], index: {} };
    leaves.forEach(function (leaf) {
      var node = root, keys = keyOf(leaf);
      keys.forEach(function (name, depth) {
        var child = node.index[name];
        if (!child) {
          // Inner rings in ever lighter tints of their level's colour, so
          // that the outer ring's hit, untested and ineligible stand out.
          child = { name: name, children: [], index: {}, stats: {},
            itemStyle: { color: tint(COLORS[keys[0]] || COLORS.deprecated, [0, 0.55, 0.7, 0.82][depth]) } };
          node.index[name] = child;
          node.children.push(child);
        }
        child.stats[leaf.state] = (child.stats[leaf.state] || 0) + 1;
        node = child;
      });
      node.children.push(leaf.node);
    });
    (function clean(n) {
      delete n.index;
      n.children.sort(function (a, b) { return a.name < b.name ? -1 : a.name > b.name ? 1 : 0; });
      n.children.forEach(function (c) { if (c.children) clean(c); });
    })(root);
    return root.children;
  }

  function reportLeaves(report) {
    return report.operations.map(function (op) {
      var p = apiParts(op.path), st = opState(op);
      return {
        state: st, op: op,
        keys: [levelOf(op), p.group, p.version, p.resource],
        node: {
          name: op.id, value: 1, state: st, hits: op.hits, method: op.method, path: op.path,
          eligibility: op.eligibility, itemStyle: { color: COLORS[st] }
        }
      };
    });
  }

  var STATE_LABELS = { hit: 'hit', untested: 'eligible, not hit', ineligible: 'not eligible, not hit',
    gained: 'gained', lost: 'lost', both: 'hit in both' };

  function tooltip(info) {
    var d = info.data || {};
    var esc = function (s) { return String(s).replace(/[&<>"]/g, function (c) { return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]; }); };
    if (d.state) {
      var lines = ['<b>' + esc(d.name) + '</b>', esc(d.method + ' ' + d.path), esc(STATE_LABELS[d.state])];
      if (d.hits !== undefined) lines.push(d.hits + ' requests');
      if (d.hitsA !== undefined) lines.push('requests: ' + d.hitsA + ' before, ' + d.hitsB + ' after');
      return lines.join('<br>');
    }
    var s = d.stats || {}, total = 0;
    Object.keys(s).forEach(function (k) { total += s[k]; });
    var parts = Object.keys(s).sort().map(function (k) { return esc(STATE_LABELS[k] || k) + ': ' + s[k]; });
    return '<b>' + esc(d.name) + '</b><br>' + total + ' operations<br>' + parts.join('<br>');
  }

  var chartRoot = '';
  function drawChart(nodes, stateKeys) {
    var box = document.getElementById('sunburst');
    if (!window.echarts) { box.textContent = 'The chart library did not load.'; return; }
    if (!state.chart) {
      state.chart = echarts.init(box, null, { renderer: 'svg' });
      window.addEventListener('resize', function () { state.chart.resize(); });
      if (window.matchMedia) {
        var print = window.matchMedia('print');
        var resize = function () { state.chart.resize(); };
        if (print.addEventListener) print.addEventListener('change', resize);
      }
    }
    var select = document.getElementById('chart-root');
    var names = nodes.map(function (n) { return n.name; });
    if (select.options.length !== names.length + 1) {
      select.textContent = '';
      select.appendChild(el('option', { value: '', text: 'every level' }));
      names.forEach(function (n) { select.appendChild(el('option', { value: n, text: n })); });
      select.value = names.indexOf(chartRoot) >= 0 ? chartRoot : '';
      select.onchange = function () { chartRoot = select.value; drawChart(nodes, stateKeys); };
    }
    var shown = chartRoot ? nodes.filter(function (n) { return n.name === chartRoot; }) : nodes;
    box.setAttribute('aria-label', 'Sunburst of ' + shown.map(function (n) {
      var s = n.stats, total = 0; Object.keys(s).forEach(function (k) { total += s[k]; });
      return n.name + ': ' + total + ' operations, ' + stateKeys.map(function (k) { return (s[k] || 0) + ' ' + STATE_LABELS[k]; }).join(', ');
    }).join('; '));
    state.chart.setOption({
      animation: false,
      tooltip: { trigger: 'item', formatter: tooltip, confine: true },
      series: [{
        type: 'sunburst', data: shown, radius: ['8%', '98%'], sort: null, nodeClick: 'rootToNode',
        emphasis: { focus: 'ancestor' },
        itemStyle: { borderColor: '#fff', borderWidth: 0.5 },
        levels: [{}, { label: { rotate: 'tangential', fontSize: 12 } }, { label: { fontSize: 10, minAngle: 8 } },
          { label: { fontSize: 9, minAngle: 6 } }, { label: { fontSize: 8, minAngle: 4 } }, { label: { show: false } }]
      }]
    }, true);
    var legend = document.getElementById('legend');
    legend.textContent = '';
    stateKeys.forEach(function (k) {
      legend.appendChild(el('li', {}, [el('span', { class: 'swatch', style: 'background:' + COLORS[k] }), STATE_LABELS[k]]));
    });
  }

  // Table is a sortable, filterable table: buttons in the headers sort
  // (aria-sort says how), the filter keeps rows whose text contains every
  // word typed. A column's value is what it sorts by; its text, when it
  // has one, is what it shows (and what the filter reads). The table goes
  // into parent (under an h3), or at the end of #tables.
  function Table(id, title, columns, note, parent) {
    this.id = id; this.columns = columns; this.rows = []; this.sortCol = -1; this.sortDir = 1; this.filter = '';
    var self = this;
    this.section = el('section', { id: id, class: 'table-section', 'aria-labelledby': id + '-title' });
    this.heading = el(parent ? 'h3' : 'h2', { id: id + '-title', class: parent ? 'table-title' : '', text: title });
    this.count = el('span', { class: 'count', role: 'status' });
    this.input = el('input', { type: 'search', id: id + '-filter', placeholder: 'Filter', 'aria-controls': id + '-table' });
    this.input.addEventListener('input', function () { self.filter = self.input.value; self.render(); });
    var label = el('label', { for: id + '-filter', class: 'visually-hidden', text: 'Filter ' + title });
    this.table = el('table', { id: id + '-table' });
    var headRow = el('tr');
    this.ths = columns.map(function (c, i) {
      var b = el('button', { type: 'button', text: c.label });
      b.addEventListener('click', function () { self.sortBy(i); });
      var th = el('th', { scope: 'col', class: c.num ? 'num' : '' }, [b]);
      headRow.appendChild(th);
      return th;
    });
    this.table.appendChild(el('thead', {}, [headRow]));
    this.tbody = el('tbody');
    this.table.appendChild(this.tbody);
    this.empty = el('p', { class: 'empty', hidden: '' });
    this.section.appendChild(this.heading);
    if (note) this.section.appendChild(el('p', { class: 'hint', text: note }));
    this.section.appendChild(el('div', { class: 'filter' }, [label, this.input, this.count]));
    this.scroll = el('div', { class: 'scroll' }, [this.table]);
    this.section.appendChild(this.scroll);
    this.section.appendChild(this.empty);
    (parent || document.getElementById('tables')).appendChild(this.section);
    state.tables[id] = this;
  }
  Table.prototype.sortBy = function (i) {
    if (this.sortCol === i) this.sortDir = -this.sortDir;
    else { this.sortCol = i; this.sortDir = this.columns[i].num ? -1 : 1; }
    this.render();
  };
  Table.prototype.set = function (rows, emptyText) {
    var cols = this.columns;
    this.rows = rows.map(function (r) {
      var cells = cols.map(function (c) { var v = c.value(r); return v == null ? '' : v; });
      var shown = cells.map(function (v, j) { return cols[j].text ? cols[j].text(v) : v; });
      return { cells: cells, shown: shown, text: shown.join(' ').toLowerCase() };
    });
    this.emptyText = emptyText;
    this.render();
  };
  Table.prototype.render = function () {
    var words = this.filter.toLowerCase().split(/\s+/).filter(Boolean);
    var rows = this.rows.filter(function (r) { return words.every(function (w) { return r.text.indexOf(w) >= 0; }); });
    if (this.sortCol >= 0) {
      var i = this.sortCol, dir = this.sortDir, num = this.columns[i].num;
      rows = rows.slice().sort(function (a, b) {
        var x = a.cells[i], y = b.cells[i];
        if (num) return dir * (x - y);
        return dir * String(x).localeCompare(String(y));
      });
    }
    var self = this;
    this.ths.forEach(function (th, j) {
      th.setAttribute('aria-sort', j === self.sortCol ? (self.sortDir > 0 ? 'ascending' : 'descending') : 'none');
    });
    var body = document.createDocumentFragment();
    rows.forEach(function (r) {
      body.appendChild(el('tr', {}, r.shown.map(function (v, j) {
        return el('td', { class: self.columns[j].num ? 'num' : self.columns[j].code ? 'code' : '' }, [String(v)]);
      })));
    });
    this.tbody.textContent = '';
    this.tbody.appendChild(body);
    this.count.textContent = rows.length === this.rows.length ? this.rows.length + ' rows' : rows.length + ' of ' + this.rows.length + ' rows';
    this.scroll.hidden = this.rows.length === 0;
    this.empty.hidden = this.rows.length !== 0;
    this.empty.textContent = this.emptyText || 'None.';
  };

  function failedOf(m) { return m ? (m['4xx'] || 0) + (m['5xx'] || 0) : 0; }

  var tables = null;
  function reportTables() {
    if (tables) return tables;
    tables = {
      hit: new Table('operations-hit', 'Operations hit', [
        { label: 'Hits', num: true, value: function (o) { return o.hits; } },
        { label: 'Level', value: function (o) { return levelOf(o); } },
        { label: 'Eligible', value: function (o) { return o.eligibility; } },
        { label: 'Operation', code: true, value: function (o) { return o.id; } },
        { label: 'Method', value: function (o) { return o.method; } },
        { label: 'Path', code: true, value: function (o) { return o.path; } },
        { label: 'Kind', value: function (o) { return o.kind; } },
        { label: 'Verbs', value: function (o) { return counts(o.byVerb); } },
        { label: 'Status', value: function (o) { return counts(o.byStatus); } },
        { label: 'Tests', num: true, value: function (o) { return (o.tests || []).length; } }
      ]),
      untested: new Table('eligible-untested', 'Eligible operations not hit', [
        { label: 'Operation', code: true, value: function (o) { return o.id; } },
        { label: 'Level', value: function (o) { return levelOf(o); } },
        { label: 'Method', value: function (o) { return o.method; } },
        { label: 'Path', code: true, value: function (o) { return o.path; } },
        { label: 'Kind', value: function (o) { return o.kind; } }
      ]),
      failed: new Table('failed-requests', 'Failed requests', [
        { label: 'Failed', num: true, value: function (r) { return r.failed; } },
        { label: 'Requests', num: true, value: function (r) { return r.requests; } },
        { label: 'Operation or request', code: true, value: function (r) { return r.name; } },
        { label: 'Status', value: function (r) { return counts(r.byStatus); } }
      ], 'Requests answered 4xx or 5xx, by operation (and by request shape for requests unknown to the release).'),
      unknown: new Table('unknown-requests', 'Requests unknown to the release', [
        { label: 'Requests', num: true, value: function (u) { return u.requests; } },
        { label: 'Request', code: true, value: function (u) { return u.shape; } },
        { label: 'Status', value: function (u) { return counts(u.byStatus); } }
      ]),
      clients: new Table('clients', 'Clients', [
        { label: 'Requests', num: true, value: function (c) { return c.requests; } },
        { label: 'Failed', num: true, value: function (c) { return c.failed; } },
        { label: 'Unknown', num: true, value: function (c) { return c.unknown; } },
        { label: 'Operations', num: true, value: function (c) { return c.operations; } },
        { label: 'Namespace', value: function (c) { return c.namespace; } },
        { label: 'Pod', value: function (c) { return c.pod; } },
        { label: 'Service account', value: function (c) { return c.serviceAccount; } },
        { label: 'User', value: function (c) { return c.user; } },
        { label: 'User agent', code: true, value: function (c) { return c.userAgent; } }
      ]),
      tests: new Table('e2e-tests', 'e2e tests', [
        { label: 'Test', value: function (t) { return t.name; } },
        { label: 'Conformance', value: function (t) { return t.conformance ? 'yes' : 'no'; } },
        { label: 'Operations', num: true, value: function (t) { return t.operations; } }
      ], 'Tests named in an e2e.test user agent.')
    };
    tables.hit.sortCol = 0; tables.hit.sortDir = -1;
    tables.failed.sortCol = 0; tables.failed.sortDir = -1;
    return tables;
  }

  var LEVELS = [['stable', 'Stable'], ['beta', 'Beta'], ['alpha', 'Alpha'], ['eligible', 'Eligible for conformance'], ['conformanceHit', 'Hit by conformance tests']];

  function card(key, label, hit, ops, percent) {
    var bar = el('div', { class: 'bar' }, [el('div', { style: 'width:' + Math.min(100, percent || 0) + '%' })]);
    return el('div', { class: 'card', 'data-level': key }, [
      el('h3', { text: label }),
      el('p', { class: 'percent' }, [el('span', { 'data-field': 'percent', text: pct(percent) })]),
      el('p', {}, [el('span', { 'data-field': 'hit', text: String(hit) }), ' of ', el('span', { 'data-field': 'operations', text: String(ops) }), ' operations']),
      bar
    ]);
  }

  var FIELD_LEVELS = LEVELS.slice(0, 4);

  function fieldCard(key, label, l) {
    var bar = el('div', { class: 'bar' }, [el('div', { style: 'width:' + Math.min(100, l.percent || 0) + '%' })]);
    return el('div', { class: 'card', 'data-level': key }, [
      el('h3', { text: label }),
      el('p', { class: 'percent' }, [el('span', { 'data-field': 'percent', text: pct(l.percent) })]),
      el('p', {}, [el('span', { 'data-field': 'hit', text: String(l.hit) }), ' of ', el('span', { 'data-field': 'inSchema', text: String(l.inSchema) }), ' fields']),
      el('p', { class: 'hint' }, [el('span', { 'data-field': 'operations', text: String(l.operations) }), ' operations, ',
        el('span', { 'data-field': 'bodies', text: String(l.bodies) }), ' bodies']),
      bar
    ]);
  }

  var fieldTables = null;
  // renderFields shows field coverage when the report has it (its delta
  // held request bodies), and the placeholder when it has not: a live
  // session may get its first bodies after the page opened.
  function renderFields(report) {
    var fs = report.summary.fields;
    document.getElementById('fields-placeholder').hidden = !!fs;
    document.getElementById('fields-measured').hidden = !fs;
    if (!fs) return;
    var ops = (report.operations || []).filter(function (o) { return o.fields; });
    var seen = ops.filter(function (o) { return o.fields.bodies > 0; });
    document.getElementById('field-totals').textContent = fs.bodies + ' request bodies' + (fs.malformed ? ' (' + fs.malformed + ' malformed)' : '') +
      ' of ' + seen.length + ' operations; ' + (ops.length - seen.length) + ' more operations take a body, none seen.' +
      (fs.schemas ? ' Fields count the field paths of each operation\'s body schema (a list item or map value is one path).' :
        ' Kubernetes ' + report.summary.release + ' has no body schemas here: fields in schema are not known.');
    var cards = document.getElementById('field-cards');
    cards.textContent = '';
    FIELD_LEVELS.forEach(function (l) { cards.appendChild(fieldCard(l[0], l[1], fs[l[0]])); });
    if (!fieldTables) {
      var parent = document.getElementById('field-tables');
      fieldTables = {
        ops: new Table('field-operations', 'Operations with request bodies', [
          { label: 'Operation', code: true, value: function (o) { return o.id; } },
          { label: 'Level', value: function (o) { return levelOf(o); } },
          { label: 'Bodies', num: true, value: function (o) { return o.fields.bodies; } },
          { label: 'Fields hit', num: true, value: function (o) { return o.fields.hit; } },
          { label: 'In schema', num: true, value: function (o) { return o.fields.inSchema; } },
          { label: 'Percent', num: true, value: function (o) { return o.fields.percent || 0; }, text: pct },
          { label: 'Unknown', num: true, value: function (o) { return (o.fields.unknown || []).length; } },
          { label: 'Ill-typed', num: true, value: function (o) { return (o.fields.illTyped || []).length; } }
        ], 'Unknown and ill-typed count field paths; the table below lists them.', parent),
        problems: new Table('field-problems', 'Unknown and ill-typed fields', [
          { label: 'Operation', code: true, value: function (p) { return p.op; } },
          { label: 'Path', code: true, value: function (p) { return p.path; } },
          { label: 'Kind', value: function (p) { return p.kind; } },
          { label: 'Bodies', num: true, value: function (p) { return p.count; } }
        ], 'Unknown: the schema has no such field. Ill-typed: the value does not fit the schema (wrong type, or not one of its values). Bodies: how many set it.', parent)
      };
      fieldTables.ops.sortCol = 2; fieldTables.ops.sortDir = -1;
      fieldTables.problems.sortCol = 3; fieldTables.problems.sortDir = -1;
    }
    var problems = [];
    seen.forEach(function (o) {
      (o.fields.unknown || []).forEach(function (h) { problems.push({ op: o.id, path: h.path, kind: 'unknown', count: h.count }); });
      (o.fields.illTyped || []).forEach(function (h) { problems.push({ op: o.id, path: h.path, kind: 'ill-typed', count: h.count }); });
    });
    fieldTables.ops.set(seen, 'No request body was seen.');
    fieldTables.problems.set(problems, 'Every field the bodies set is in the schema, with a value that fits.');
  }

  function renderReport(report) {
    var s = report.summary;
    document.getElementById('subtitle').textContent = 'Kubernetes ' + s.release + ' · ' + config.source + (config.generated ? ' · written ' + config.generated : '');
    document.getElementById('totals').textContent = s.requests + ' requests, ' + s.failedRequests + ' failed, ' + s.unknownRequests + ' unknown to Kubernetes ' + s.release +
      (s.deprecatedHit ? ', ' + s.deprecatedHit + ' deprecated operations used' : '') + '.';
    var cards = document.getElementById('cards');
    cards.textContent = '';
    LEVELS.forEach(function (l) { var v = s[l[0]]; cards.appendChild(card(l[0], l[1], v.hit, v.operations, v.percent)); });

    var leaves = reportLeaves(report);
    drawChart(tree(leaves, function (l) { return l.keys; }), ['hit', 'untested', 'ineligible']);

    var t = reportTables();
    var ops = report.operations || [];
    var hit = ops.filter(function (o) { return o.hits > 0; });
    var byID = {};
    ops.forEach(function (o) { byID[o.id] = o; });
    t.hit.set(hit, 'No operation was hit.');
    t.untested.set((report.untested || []).map(function (id) { return byID[id] || { id: id }; }), 'Every eligible operation was hit.');
    var failed = [];
    hit.forEach(function (o) { var f = failedOf(o.byStatus); if (f) failed.push({ name: o.id, failed: f, requests: o.hits, byStatus: o.byStatus }); });
    (report.unknown || []).forEach(function (u) { var f = failedOf(u.byStatus); if (f) failed.push({ name: u.shape, failed: f, requests: u.requests, byStatus: u.byStatus }); });
    t.failed.set(failed, 'No request failed.');
    t.unknown.set(report.unknown || [], 'Every request matched an operation of the release.');
    t.clients.set(report.clients || [], 'No client recorded.');
    t.tests.set(report.tests || [], 'No e2e test named in a user agent.');
    renderFields(report);
    state.data = report;
    state.renders++;
  }

  // renderDiff shows two coverage results: per-level cards before and
  // after, the operations hit in either as a sunburst coloured gained, lost
  // or hit in both, and tables of the operations gained and lost.
  function renderDiff(diff) {
    document.getElementById('subtitle').textContent = 'Kubernetes ' + diff.releaseA + (diff.releaseB !== diff.releaseA ? ' → ' + diff.releaseB : '') +
      ' · before: ' + diff.nameA + ' · after: ' + diff.nameB;
    document.getElementById('cards-title').textContent = 'Coverage before and after';
    document.getElementById('totals').textContent = diff.gained.length + ' operations gained, ' + diff.lost.length + ' lost, ' + diff.both.length + ' hit in both.';
    var cards = document.getElementById('cards');
    cards.textContent = '';
    var labels = {};
    LEVELS.forEach(function (l) { labels[l[0]] = l[1]; });
    diff.levels.forEach(function (l) {
      var delta = l.hitB - l.hitA;
      cards.appendChild(el('div', { class: 'card', 'data-level': l.level }, [
        el('h3', { text: labels[l.level] || l.level }),
        el('p', { class: 'percent' }, [el('span', { 'data-field': 'delta', text: (delta > 0 ? '+' : '') + delta })]),
        el('p', {}, [el('span', { 'data-field': 'hitA', text: String(l.hitA) }), ' → ', el('span', { 'data-field': 'hitB', text: String(l.hitB) }), ' of ' + l.operationsB + ' operations'])
      ]));
    });
    var rows = diff.gained.map(function (o) { return [o, 'gained']; }).concat(diff.lost.map(function (o) { return [o, 'lost']; }), (diff.both || []).map(function (o) { return [o, 'both']; }));
    var leaves = rows.map(function (r) {
      var o = r[0], p = apiParts(o.path);
      return { state: r[1], keys: [o.deprecated ? 'deprecated' : o.level, p.group, p.version, p.resource],
        node: { name: o.id, value: 1, state: r[1], method: o.method, path: o.path, hitsA: o.hitsA, hitsB: o.hitsB, itemStyle: { color: COLORS[r[1]] } } };
    });
    drawChart(tree(leaves, function (l) { return l.keys; }), ['gained', 'lost', 'both']);
    document.getElementById('chart-title').textContent = 'Operations hit in either, by level, group, version and resource';
    var cols = [
      { label: 'Operation', code: true, value: function (o) { return o.id; } },
      { label: 'Level', value: function (o) { return o.level; } },
      { label: 'Eligible', value: function (o) { return o.eligibility; } },
      { label: 'Method', value: function (o) { return o.method; } },
      { label: 'Path', code: true, value: function (o) { return o.path; } },
      { label: 'Hits before', num: true, value: function (o) { return o.hitsA; } },
      { label: 'Hits after', num: true, value: function (o) { return o.hitsB; } }
    ];
    if (!tables) {
      tables = { gained: new Table('gained', 'Operations gained', cols, 'Hit after, not before.'), lost: new Table('lost', 'Operations lost', cols, 'Hit before, not after.') };
    }
    tables.gained.set(diff.gained, 'No operation gained.');
    tables.lost.set(diff.lost, 'No operation lost.');
    // Field paths gained and lost, one row each, when both results have
    // field data (the report page's field section does not apply here).
    if (diff.fields) {
      if (!tables.fields) {
        tables.fields = new Table('field-changes', 'Fields gained and lost', [
          { label: 'Operation', code: true, value: function (f) { return f.op; } },
          { label: 'Change', value: function (f) { return f.change; } },
          { label: 'Field path', code: true, value: function (f) { return f.path; } }
        ], 'Field paths the request bodies set after and not before (gained), and before and not after (lost).');
      }
      var changes = [];
      diff.gained.concat(diff.lost, diff.both || []).forEach(function (o) {
        (o.fieldsGained || []).forEach(function (p) { changes.push({ op: o.id, change: 'gained', path: p }); });
        (o.fieldsLost || []).forEach(function (p) { changes.push({ op: o.id, change: 'lost', path: p }); });
      });
      document.getElementById('totals').textContent += ' ' + diff.fieldsGained + ' field paths gained, ' + diff.fieldsLost + ' lost.';
      tables.fields.set(changes, 'No field path gained or lost.');
    }
    document.getElementById('field-coverage').hidden = true;
    state.data = diff;
    state.renders++;
  }

  // The live page: the reader's token from the URL fragment (never sent to
  // a server) or the form, kept in sessionStorage; the results fetched with
  // it every refreshSeconds.
  function live() {
    var box = document.getElementById('live'), status = document.getElementById('live-status');
    var form = document.getElementById('token-form'), input = document.getElementById('token');
    box.hidden = false;
    var key = 'snoop-token:' + location.pathname;
    var m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
    if (m) {
      sessionStorage.setItem(key, decodeURIComponent(m[1]));
      history.replaceState(null, '', location.pathname + location.search);
    }
    var timer = null;
    function schedule() { clearTimeout(timer); timer = setTimeout(poll, config.refreshSeconds * 1000); }
    function ask(msg) {
      status.textContent = msg;
      form.hidden = false;
      input.focus();
    }
    function poll() {
      var token = sessionStorage.getItem(key);
      if (!token) { ask('This page shows the live results of ' + config.source + ' to whoever may get it.'); return; }
      var headers = { Accept: 'application/json' };
      if (config.tokenHeader) headers[config.tokenHeader] = token;
      else headers.Authorization = 'Bearer ' + token;
      fetch(config.resultsURL, { headers: headers, cache: 'no-store', credentials: 'omit' })
        .then(function (resp) {
          if (resp.status === 401 || resp.status === 403) {
            return resp.text().then(function (t) { sessionStorage.removeItem(key); ask('Refused (' + resp.status + '): ' + t.trim()); });
          }
          if (!resp.ok) {
            return resp.text().then(function (t) { status.textContent = 'Not available (' + resp.status + '): ' + t.trim() + '; trying again.'; schedule(); });
          }
          return resp.json().then(function (report) {
            form.hidden = true;
            renderReport(report);
            status.textContent = 'Live: ' + report.summary.requests + ' requests as of ' + new Date().toLocaleTimeString() + ', refreshed every ' + config.refreshSeconds + ' s.';
            schedule();
          });
        })
        .catch(function (err) { status.textContent = 'Could not reach the results API (' + err + '); trying again.'; schedule(); });
    }
    form.addEventListener('submit', function (e) {
      e.preventDefault();
      sessionStorage.setItem(key, input.value.trim());
      input.value = '';
      poll();
    });
    poll();
  }

  if (config.kind === 'live') live();
  else if (config.kind === 'diff') renderDiff(embedded);
  else renderReport(embedded);
})();
