"""The README table of this folder from its three repetitions."""
import json, os, statistics, sys
reps=[]
for r in (1,2,3):
    try: reps.append([json.loads(l) for l in open(os.path.join(os.path.dirname(os.path.abspath(__file__)), f'bench-cpu-rep{r}.jsonl'))])
    except FileNotFoundError: pass
def key(x): return (x['pattern'], x['seq'])
bsa={}; peer={}
for rows in reps:
    for x in rows:
        if 'peer' in x:
            peer.setdefault(key(x),{}).setdefault('fwd',[]).append(x['fwd_ms'])
            peer[key(x)].setdefault('fwd+bwd',[]).append(x['fwdbwd_ms'])
        else:
            bsa.setdefault(key(x),{}).setdefault(x['pass'],[]).append(x['time_ms'])
def f(v): return f"{statistics.median(v):.2f} [{min(v):.2f}-{max(v):.2f}]"
print(f"{len(reps)} repetitions; passes in bsa rows:", sorted({p for k in bsa for p in bsa[k]}))
print("| pattern | T | element density | bsa fwd ms | SDPA fwd ms | speed-up fwd (min-max) | bsa fwd+bwd ms | SDPA fwd+bwd ms | speed-up fwd+bwd (min-max) |")
print("|---|---|---|---|---|---|---|---|---|")
dens={key(x): x['element_density'] for x in reps[0] if 'peer' not in x}
for k in sorted(bsa, key=lambda k:(['all','local','strided','fixed'].index(k[0]), k[1])):
    b=bsa[k]; p=peer.get(k,{})
    bf=b.get('fwd'); bb=[x+y for x,y in zip(b['fwd'], b['bwd'])]
    pf=p.get('fwd'); pb=p.get('fwd+bwd')
    def ratio(pv, bv):
        rs=[a/c for a,c in zip(pv,bv)]
        return f"{statistics.median(rs):.2f}x ({min(rs):.2f}-{max(rs):.2f})"
    print(f"| {k[0]} | {k[1]} | {dens[k]:.3f} | {f(bf)} | {f(pf)} | {ratio(pf,bf)} | {f(bb)} | {f(pb)} | {ratio(pb,bb)} |")
