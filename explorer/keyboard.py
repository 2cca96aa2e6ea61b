"""Keyboard use of the page: `KEYBOARD_HEAD`, a script for the page's <head> (app.py's launch options) that mends
what Gradio's own components get wrong for someone who moves with Tab.

Gradio's dropdown opens its list of options when its field gets the focus. A list taller than the room left in
the window scrolls, and Chromium (since version 130) and Firefox put a scrolling box without focusable children in
the Tab order: Tab from the field moves the focus into the list, the field's blur closes (removes) the list, and the
focus falls to the page itself, so every control after that dropdown is out of the keyboard's reach (found on the
Train tab's Dataset menu once it held 11 data sets). The options are chosen with the arrow keys and Enter in the
field (the list is an ARIA listbox driven by aria-activedescendant), so the list itself never needs the focus: the
script takes every listbox out of the Tab order (tabindex -1) as soon as it appears.

Plotly's toolbar over each plot ends in its logo, a link to plotly.com with no name: one more Tab stop per plot that
a screen reader reads as "link" and that leads off the app. The style here hides it (the figure's config, where
plotly.js would take `displaylogo: false`, is not passed on by gr.Plot).

tests/test_accessibility.py tabs through every tab and fails on any control the keyboard does not reach or that
has no name.
"""

from __future__ import annotations

# runs once in <head>: marks the listboxes there are and, through a MutationObserver, every one Gradio adds later
KEYBOARD_HEAD = """<style>.js-plotly-plot .plotly .modebar-group a.modebar-btn--logo {display: none}</style>
<script>
(() => {
  const unfocusable = root => root.querySelectorAll('[role=listbox]:not([tabindex])')
    .forEach(list => list.setAttribute('tabindex', '-1'));
  const watch = () => {
    unfocusable(document);
    new MutationObserver(changes => changes.forEach(change => change.addedNodes.forEach(node => {
      if (node.nodeType !== 1) return;
      if (node.matches('[role=listbox]:not([tabindex])')) node.setAttribute('tabindex', '-1');
      unfocusable(node);
    }))).observe(document.body, {childList: true, subtree: true});
  };
  if (document.body) watch(); else document.addEventListener('DOMContentLoaded', watch);
})();
</script>"""
