/// One small stylesheet: readable on a phone, calm on a desktop, visible focus for keyboards.
pub const CSS: &str = r#"
:root { color-scheme: light; --ink: #1c2330; --muted: #5b6472; --line: #d9dee7;
  --accent: #2f5bd3; --accent-dark: #2349ad; --danger: #b42318; --danger-bg: #fef3f2;
  --ok-bg: #ecfdf3; --ok: #067647; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--ink); background: #f4f6fa; }
main { max-width: 26rem; margin: 8vh auto 2rem; padding: 0 1rem; }
.brand { font-weight: 700; letter-spacing: .02em; color: var(--accent); margin: 0 0 1rem; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 12px; padding: 1.75rem;
  box-shadow: 0 1px 2px rgba(16, 24, 40, .05); }
h1 { font-size: 1.5rem; margin: 0 0 1.25rem; }
label { display: block; font-weight: 600; margin: 1rem 0 .35rem; }
input { width: 100%; font: inherit; padding: .65rem .75rem; border: 1px solid var(--line);
  border-radius: 8px; }
input:focus, button:focus-visible, a:focus-visible { outline: 3px solid rgba(47, 91, 211, .35);
  outline-offset: 1px; border-color: var(--accent); }
.hint { color: var(--muted); font-size: .875rem; margin: .35rem 0 0; }
.field-error { color: var(--danger); font-size: .875rem; margin: .35rem 0 0; }
.field-error:empty { display: none; }
button { font: inherit; font-weight: 600; border: 0; border-radius: 8px; padding: .7rem 1rem;
  cursor: pointer; background: var(--accent); color: #fff; }
button:hover { background: var(--accent-dark); }
button[disabled] { opacity: .6; cursor: progress; }
button.secondary { background: #fff; color: var(--ink); border: 1px solid var(--line); }
form button[type=submit] { width: 100%; margin-top: 1.5rem; }
.alert { margin: 1rem 0 0; padding: .7rem .8rem; border-radius: 8px; background: var(--danger-bg);
  color: var(--danger); }
.notice { margin: 0 0 1rem; padding: .7rem .8rem; border-radius: 8px; background: var(--ok-bg);
  color: var(--ok); }
.switch { margin: 1.25rem 0 0; text-align: center; color: var(--muted); }
a { color: var(--accent); }
dl { display: grid; grid-template-columns: auto 1fr; gap: .4rem 1rem; margin: 0; }
dt { color: var(--muted); }
dd { margin: 0; overflow-wrap: anywhere; }
.actions { display: flex; gap: .75rem; margin-top: 1.5rem; flex-wrap: wrap; }
.actions button { flex: 1 1 8rem; }
main.wide { max-width: 36rem; }
.card + .card { margin-top: 1rem; }
h2 { font-size: 1.15rem; margin: 0 0 .75rem; }
.card h1 + .switch-left { margin-top: -.75rem; }
.switch-left { margin: 0 0 1.25rem; }
.banner { margin: 0 0 1rem; padding: .7rem .8rem; border-radius: 8px; background: #fffaeb;
  color: #93370d; display: flex; gap: .75rem; align-items: center; flex-wrap: wrap; }
.banner p { margin: 0; flex: 1 1 12rem; }
.sessions { list-style: none; margin: 0; padding: 0; }
.session { display: flex; gap: .75rem; align-items: center; padding: .75rem 0;
  border-top: 1px solid var(--line); }
.session:first-child { border-top: 0; }
.session-text { flex: 1 1 auto; min-width: 0; display: flex; flex-direction: column; }
.device { overflow-wrap: anywhere; font-weight: 600; }
.badge { font-size: .8rem; padding: .2rem .55rem; border-radius: 999px; background: var(--ok-bg);
  color: var(--ok); white-space: nowrap; }
.session button { padding: .45rem .8rem; }
label.check { display: flex; gap: .5rem; align-items: center; font-weight: 400; }
label.check input { width: auto; }
button.danger { background: var(--danger); }
a.button-link { flex: 1 1 100%; text-align: center; padding: .4rem 0; }
button.danger:hover { background: #912018; }
@media (max-width: 480px) { main { margin-top: 1.5rem; } .card { padding: 1.25rem; } }
"#;
