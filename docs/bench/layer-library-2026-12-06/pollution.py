import re
def windows():
    st, w = {}, {}
    for l in open('raw/runlog.txt'):
        m = re.match(r'(\d\d:\d\d:\d\d) (START|END) +(\w+) (old|new) r(\d)', l)
        if m:
            t, ev, n, i, r = m.groups()
            if ev == 'START': st[(n, i, int(r))] = t
            else: w[(n, i, int(r))] = (st[(n, i, int(r))], t)
    return w
def polluted():
    mon = [l[:8] for l in open('raw/monitor.txt')]
    return {k: sum(a <= t <= b for t in mon) for k, (a, b) in windows().items()}
if __name__ == '__main__':
    for k, v in sorted(polluted().items()): print(k, windows()[k], 'busy samples:', v)
