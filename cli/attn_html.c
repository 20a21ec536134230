/* attn_html.c — the offline attention page (see attn_html.h).
 *
 * The data goes in as one JSON object inside <script type="application/json">, with every '<'
 * written as \u003c so no token can close the script element; the page's code reads it with
 * JSON.parse and puts token text into the page only through textContent and canvas fillText,
 * never as HTML. Colours come from the PNGs' scale (heatmap.h), so both agree. */
#include "attn_html.h"

#include "atomic.h"
#include "heatmap.h"
#include "textio.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char css[] =
    "body{font:14px/1.4 system-ui,sans-serif;margin:20px;color:#222;max-width:1200px}"
    "h1{font-size:20px;margin:0 0 6px}.src{color:#555;margin:2px 0}.src b{color:#222}"
    ".bar{margin:12px 0;display:flex;gap:14px;align-items:center;flex-wrap:wrap}"
    "select,label{font:inherit}#wrap{position:relative;display:inline-block}"
    "#tip{position:absolute;pointer-events:none;background:#222;color:#fff;padding:3px 7px;"
    "border-radius:4px;font-size:12px;white-space:pre;display:none}"
    "table{border-collapse:collapse;margin-top:14px;font-size:13px}"
    "th,td{padding:2px 8px;text-align:right;border-bottom:1px solid #eee}"
    "th{position:sticky;top:0;background:#fafafa;cursor:pointer}tr.sel td{background:#ffe9a8}"
    "tbody tr{cursor:pointer}tbody tr:hover td{background:#f3f3f3}"
    ".note{color:#666;font-size:13px;max-width:900px}"
    ".tk{display:inline-block;padding:3px 5px;margin:2px;border:1px solid #ddd;border-radius:3px}"
    ".sn{font-size:12px;color:#555;margin-top:8px}";

static const char js[] =
    "const D=JSON.parse(document.getElementById('data').textContent);\n"
    "for(const s of D.stacks){s.maps=Float32Array.from(s.maps);"
    "if(s.rollout)s.rollout=Float32Array.from(s.rollout);}\n"
    "const tok=D.tokens,ss=document.getElementById('stack'),ls=document.getElementById('layer'),"
    "hs=document.getElementById('head'),rb=document.getElementById('roll'),"
    "tb=document.getElementById('rows');\n"
    "D.stacks.forEach((s,k)=>ss.add(new Option(s.name,k)));"
    "if(D.stacks.length<2)ss.style.display='none';\n"
    "let S=D.stacks[0];\n"
    "function col(x){x=Math.max(0,Math.min(1,x||0));let f=x*8,i=Math.min(7,Math.floor(f));f-=i;\n"
    " const a=D.stops[i],b=D.stops[i+1],c=[0,1,2].map(k=>Math.round((1-f)*a[k]+f*b[k]));\n"
    " return 'rgb('+c.join(',')+')';}\n"
    "function cur(){const l=+ls.value,h=+hs.value,n=S.R*S.C;\n"
    " if(rb.checked)return{m:S.rollout,r:S.cols,c:S.cols,"
    "t:S.name+': rollout over all layers (Abnar & Zuidema 2020)'};\n"
    " if(h>=0)return{m:S.maps.subarray(((l*S.H)+h)*n,((l*S.H)+h+1)*n),r:S.rows,c:S.cols,"
    "t:S.name+': layer '+l+', head '+h};\n"
    " const m=new Float32Array(n);for(let k=0;k<S.H;k++){const o=((l*S.H)+k)*n;"
    "for(let e=0;e<n;e++)m[e]+=S.maps[o+e]/S.H;}"
    "return{m:m,r:S.rows,c:S.cols,t:S.name+': layer '+l+', mean of '+S.H+' heads'};}\n"
    "const "
    "cv=document.getElementById('cv'),cx=cv.getContext('2d'),tip=document.getElementById('tip');\n"
    "let G={};\n"
    "function short(s){return s.length>20?s.slice(0,19)+'\\u2026':s;}\n"
    "function draw(){const c=cur(),R=c.r.length,C=c.c.length;"
    "document.getElementById('what').textContent=c.t;\n"
    " const cell=Math.max(4,Math.min(28,Math.floor(640/Math.max(R,C)))),"
    "fs=Math.max(7,Math.min(12,cell-2));\n"
    " cx.font=fs+'px sans-serif';let wr=0,wc=0;"
    "for(const s of c.r)wr=Math.max(wr,cx.measureText(short(s)).width);\n"
    " for(const s of c.c)wc=Math.max(wc,cx.measureText(short(s)).width);\n"
    " const step=Math.ceil((fs+1)/cell),left=wr+12,top=wc+12;\n"
    " const "
    "dpr=window.devicePixelRatio||1;cv.width=(left+cell*C+10)*dpr;cv.height=(top+cell*R+10)*dpr;\n"
    " cv.style.width=(left+cell*C+10)+'px';cv.style.height=(top+cell*R+10)+'px';\n"
    " cx.setTransform(dpr,0,0,dpr,0,0);cx.fillStyle='#fff';cx.fillRect(0,0,cv.width,cv.height);\n"
    " cx.font=fs+'px "
    "sans-serif';cx.fillStyle='#222';cx.textAlign='right';cx.textBaseline='middle';\n"
    " for(let i=0;i<R;i+=step)cx.fillText(short(c.r[i]),left-6,top+(i+.5)*cell);\n"
    " for(let "
    "j=0;j<C;j+=step){cx.save();cx.translate(left+(j+.5)*cell,top-6);cx.rotate(-Math.PI/2);"
    "cx.textAlign='left';cx.fillText(short(c.c[j]),0,0);cx.restore();}\n"
    " for(let i=0;i<R;i++)for(let j=0;j<C;j++){cx.fillStyle=col(c.m[i*C+j]);"
    "cx.fillRect(left+j*cell,top+i*cell,cell+.5,cell+.5);}\n"
    " G={c:c,R:R,C:C,cell:cell,left:left,top:top};\n"
    " for(const r of tb.rows)r.classList.toggle('sel',!rb.checked&&"
    "+r.dataset.l===+ls.value&&+r.dataset.h===+hs.value);}\n"
    "cv.addEventListener('mousemove',e=>{const r=cv.getBoundingClientRect();"
    "const "
    "j=Math.floor((e.clientX-r.left-G.left)/G.cell),i=Math.floor((e.clientY-r.top-G.top)/G.cell);\n"
    " if(i<0||j<0||i>=G.R||j>=G.C){tip.style.display='none';return;}\n"
    " tip.textContent='query '+i+' \\u201c'+G.c.r[i]+'\\u201d \\u2192 key '+j+' \\u201c'+"
    "G.c.c[j]+'\\u201d\\n'+(rb.checked?'rollout ':'p = ')+G.c.m[i*G.C+j].toFixed(4);\n"
    " tip.style.display='block';tip.style.left=(e.clientX-r.left+14)+'px';"
    "tip.style.top=(e.clientY-r.top+14)+'px';});\n"
    "cv.addEventListener('mouseleave',()=>tip.style.display='none');\n"
    "function fx(v,d){return v===null?'\\u2013':v.toFixed(d);}\n"
    "function setStack(){S=D.stacks[+ss.value];ls.length=0;hs.length=0;\n"
    " for(let l=0;l<S.L;l++)ls.add(new Option('layer '+l,l));\n"
    " for(let h=0;h<S.H;h++)hs.add(new Option('head '+h,h));"
    "hs.add(new Option('mean of heads',-1));\n"
    " rb.disabled=!S.rollout;if(!S.rollout)rb.checked=false;\n"
    " document.getElementById('thc').textContent=S.cls;"
    "document.getElementById('ths').textContent=S.sep;\n"
    " while(tb.rows.length)tb.deleteRow(0);\n"
    " for(let l=0;l<S.L;l++)for(let h=0;h<S.H;h++){const s=S.stats[l*S.H+h],tr=tb.insertRow();"
    "tr.dataset.l=l;tr.dataset.h=h;\n"
    "  for(const v of [l,h,fx(s[0],3),fx(s[1],2),fx(s[2],3),fx(s[3],3),fx(s[4],3)])"
    "tr.insertCell().textContent=v;\n"
    "  tr.onclick=()=>{ls.value=l;hs.value=h;rb.checked=false;draw();};}\n"
    " draw();}\n"
    "document.querySelectorAll('th').forEach((th,k)=>th.onclick=()=>{const rs=[...tb.rows];"
    "const d=th.dataset.d=th.dataset.d==='1'?'-1':'1';\n"
    " rs.sort((a,b)=>d*((parseFloat(a.cells[k].textContent)||0)-"
    "(parseFloat(b.cells[k].textContent)||0)));rs.forEach(r=>tb.appendChild(r));});\n"
    "document.getElementById('legend').style.background='linear-gradient(to right,'+"
    "D.stops.map(c=>'rgb('+c.join(',')+')').join(',')+')';\n"
    "function salrow(a,name){const sd=document.getElementById('sal'),row=document.createElement("
    "'div'),mx=Math.max(1e-30,...a.map(v=>Math.abs(v||0)));\n"
    " const h=document.createElement('div');h.className='sn';h.textContent=name+' (|max| '+"
    "mx.toPrecision(3)+')';row.appendChild(h);\n"
    " tok.forEach((s,i)=>{const v=a[i]||0,e=document.createElement('span');e.className='tk';"
    "e.textContent=s;e.title='token '+i+': '+v.toPrecision(4);\n"
    "  const "
    "f=Math.abs(v)/mx;e.style.background=v>=0?'rgba(214,39,40,'+f+')':'rgba(31,119,180,'+f+')';"
    "row.appendChild(e);});sd.appendChild(row);}\n"
    "if(D.saliency)salrow(D.saliency,'gradient \\u00d7 input');\n"
    "if(D.ig)salrow(D.ig,'integrated gradients');\n"
    "const k0=parseInt(location.hash.slice(1));if(k0>=0&&k0<D.stacks.length)ss.value=k0;\n"
    "ls.onchange=hs.onchange=rb.onchange=draw;ss.onchange=setStack;setStack();\n";

/* Writes a JSON array of n floats as compact numbers. */
static void put_floats(FILE *f, const float *v, size_t n) {
    fputc('[', f);
    for (size_t i = 0; i < n; i++) {
        const double x = v[i];
        if (x == 0)
            fputs(i ? ",0" : "0", f);
        else if (!isfinite(x)) /* JSON has no NaN: the page reads null as 0 */
            fputs(i ? ",null" : "null", f);
        else
            fprintf(f, i ? ",%.5g" : "%.5g", x);
    }
    fputc(']', f);
}

/* A JSON list of n token labels. */
static void put_tokens(FILE *f, const char *const *t, int64_t n) {
    fputc('[', f);
    for (int64_t i = 0; i < n; i++) {
        if (i) fputc(',', f);
        json_write_string(f, t[i], strlen(t[i]));
    }
    fputc(']', f);
}

/* One stack as a JSON object. */
static void put_stack(FILE *f, const attn_stack *s) {
    fputs("{\"name\":", f);
    json_write_string(f, s->name, strlen(s->name));
    fprintf(f, ",\"L\":%lld,\"H\":%lld,\"R\":%lld,\"C\":%lld,\"rows\":", (long long)s->L,
            (long long)s->H, (long long)s->R, (long long)s->C);
    put_tokens(f, s->rows, s->R);
    fputs(",\"cols\":", f);
    put_tokens(f, s->cols, s->C);
    fputs(",\"maps\":", f);
    put_floats(f, s->maps, (size_t)(s->L * s->H * s->R * s->C));
    fputs(",\"rollout\":", f);
    if (s->rollout)
        put_floats(f, s->rollout, (size_t)(s->C * s->C));
    else
        fputs("null", f);
    fputs(",\"stats\":[", f);
    for (int64_t k = 0; k < s->L * s->H; k++) {
        const qkv_head_stats *h = &s->stats[k];
        json_printf(f, "%s[%.6g,%.6g,%.6g,%.6g,%.6g]", k ? "," : "", h->entropy, h->distance,
                    h->cls, h->sep, h->prev); /* a NaN statistic is null */
    }
    fputs("],\"cls\":", f);
    json_write_string(f, s->cls_name, strlen(s->cls_name));
    fputs(",\"sep\":", f);
    json_write_string(f, s->sep_name, strlen(s->sep_name));
    fputc('}', f);
}

/* The page's data as one JSON object in a malloc'd string. */
static char *page_json(const attn_page *p, size_t *len) {
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    if (!f) return NULL;
    const attn_stack *s0 = &p->stacks[0];
    fputs("{\"stacks\":[", f);
    for (int k = 0; k < p->n_stacks; k++) {
        if (k) fputc(',', f);
        put_stack(f, &p->stacks[k]);
    }
    fputs("],\"tokens\":", f);
    put_tokens(f, s0->cols, s0->C);
    fputs(",\"saliency\":", f);
    if (p->saliency)
        put_floats(f, p->saliency, (size_t)s0->C);
    else
        fputs("null", f);
    fputs(",\"ig\":", f);
    if (p->ig)
        put_floats(f, p->ig, (size_t)s0->C);
    else
        fputs("null", f);
    fputs(",\"stops\":[", f);
    double rgb[3];
    for (int k = 0; k <= 8; k++) {
        cli_heat_colour(k / 8.0, rgb);
        fprintf(f, "%s[%d,%d,%d]", k ? "," : "", (int)(rgb[0] * 255 + .5), (int)(rgb[1] * 255 + .5),
                (int)(rgb[2] * 255 + .5));
    }
    fputs("]}", f);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* Text as HTML element content: & < > escaped, invalid UTF-8 as U+FFFD. */
static void put_text(FILE *f, const char *s) {
    char *c = utf8_clean(s, strlen(s));
    for (const char *q = c ? c : ""; *q; q++) {
        if (*q == '&')
            fputs("&amp;", f);
        else if (*q == '<')
            fputs("&lt;", f);
        else if (*q == '>')
            fputs("&gt;", f);
        else
            fputc(*q, f);
    }
    free(c);
}

/* "<p class=src>what <b>text</b></p>", nothing when text is NULL */
static void put_src(FILE *f, const char *what, const char *text) {
    if (!text) return;
    fprintf(f, "<p class=\"src\">%s <b>", what);
    put_text(f, text);
    fputs("</b></p>\n", f);
}

typedef struct {
    const attn_page *p;
    const char *json;
    size_t len;
} page_ctx;

static void write_page(FILE *f, const void *vctx) {
    const page_ctx *c = vctx;
    const attn_page *p = c->p;
    fprintf(f,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
            "<title>qkv attention</title>\n<style>%s</style></head><body>\n",
            css);
    fputs("<h1>Attention maps</h1>\n", f);
    put_src(f, "model", p->model);
    put_src(f, "text", p->text);
    put_src(f, "pair", p->pair);
    put_src(f, "target", p->target);
    if (p->note) {
        fputs("<p class=\"note\">", f);
        put_text(f, p->note);
        fputs("</p>\n", f);
    }
    fputs("<p class=\"note\">", f);
    for (int k = 0; k < p->n_stacks; k++) {
        const attn_stack *s = &p->stacks[k];
        if (p->n_stacks > 1) {
            put_text(f, s->name);
            fputs(": ", f);
        }
        fprintf(f, "%lld &times; %lld tokens, %lld layers &times; %lld heads. ", (long long)s->R,
                (long long)s->C, (long long)s->L, (long long)s->H);
    }
    fputs("Row i of a map is how query token i spreads its attention over the key tokens (each "
          "row sums to 1). Attention weights show where a head reads from, not why the model "
          "decides: see docs/INTERPRET.md.</p>\n",
          f);
    fputs("<div class=\"bar\"><select id=\"stack\"></select><select id=\"layer\"></select>"
          "<select id=\"head\"></select>"
          "<label><input type=\"checkbox\" id=\"roll\"> rollout</label>"
          "<b id=\"what\"></b><span>0 <span id=\"legend\" style=\"display:inline-block;"
          "width:160px;height:12px;vertical-align:middle\"></span> 1</span></div>\n<div "
          "id=\"wrap\"><canvas id=\"cv\"></canvas>"
          "<div id=\"tip\"></div></div>\n",
          f);
    if (p->saliency) {
        fputs("<h2>Saliency</h2><p class=\"note\">Which input tokens drove <b>", f);
        put_text(f, p->saliency_what ? p->saliency_what : "?");
        fputs("</b>. Gradient &times; input: for each token, the gradient of that number with "
              "respect to the token's word embedding, dotted with the embedding (a first-order, "
              "local estimate). Integrated gradients: the same gradient averaged along the "
              "straight line from a baseline to the input, times (input &minus; baseline); the "
              "attributions add up to f(input) &minus; f(baseline) up to the quadrature error "
              "below. Red raises the number, blue lowers it, shade by size within each row; the "
              "value on hover. Neither is a causal effect: see docs/INTERPRET.md.</p>\n",
              f);
        if (p->ig_note) {
            fputs("<p class=\"note\">", f);
            put_text(f, p->ig_note);
            fputs("</p>\n", f);
        }
        fputs("<div id=\"sal\"></div>\n", f);
    }
    fputs("<h2>Heads</h2><p class=\"note\">Means over the query tokens of the stack shown: "
          "entropy in nats (0 = one key, ln T = uniform), distance in tokens, shares of attention "
          "on the marked tokens named in the titles and on the previous token (a dash where the "
          "queries and keys are two different sequences). Click a row to show that head; click a "
          "column title to sort.</p>\n<table><thead><tr><th>layer</th><th>head</th>"
          "<th>entropy</th><th>distance</th><th id=\"thc\"></th><th id=\"ths\"></th>"
          "<th>previous</th></tr></thead><tbody id=\"rows\"></tbody></table>\n",
          f);
    fputs("<script id=\"data\" type=\"application/json\">", f);
    for (size_t i = 0; i < c->len; i++) {
        if (c->json[i] == '<')
            fputs("\\u003c", f);
        else
            fputc(c->json[i], f);
    }
    fprintf(f, "</script>\n<script>\n%s", js);
    fputs("</script>\n</body></html>\n", f);
}

int attn_html_write(const char *path, const attn_page *p) {
    int ok = path && p && p->stacks && p->n_stacks >= 1;
    for (int k = 0; ok && k < p->n_stacks; k++) {
        const attn_stack *s = &p->stacks[k];
        ok = s->name && s->rows && s->cols && s->maps && s->stats && s->cls_name && s->sep_name &&
             s->L >= 1 && s->H >= 1 && s->R >= 1 && s->C >= 1;
    }
    if (!ok) {
        errno = EINVAL;
        return -1;
    }
    page_ctx c = {p, NULL, 0};
    char *json = page_json(p, &c.len);
    if (!json) {
        errno = ENOMEM;
        return -1;
    }
    c.json = json;
    int rc = atomic_write(path, write_page, &c);
    free(json);
    return rc;
}
