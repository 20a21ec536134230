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
    "D.maps=Float32Array.from(D.maps);D.rollout=Float32Array.from(D.rollout);\n"
    "const T=D.T,L=D.L,H=D.H,tok=D.tokens;\n"
    "const ls=document.getElementById('layer'),hs=document.getElementById('head'),"
    "rb=document.getElementById('roll');\n"
    "for(let l=0;l<L;l++)ls.add(new Option('layer '+l,l));\n"
    "for(let h=0;h<H;h++)hs.add(new Option('head '+h,h));hs.add(new Option('mean of heads',-1));\n"
    "function col(x){x=Math.max(0,Math.min(1,x||0));let f=x*8,i=Math.min(7,Math.floor(f));f-=i;\n"
    " const a=D.stops[i],b=D.stops[i+1],c=[0,1,2].map(k=>Math.round((1-f)*a[k]+f*b[k]));\n"
    " return 'rgb('+c.join(',')+')';}\n"
    "function cur(){const l=+ls.value,h=+hs.value;if(rb.checked)return{m:D.rollout,"
    "t:'rollout over all layers (Abnar & Zuidema 2020)'};\n"
    " if(h>=0)return{m:D.maps.subarray(((l*H)+h)*T*T,((l*H)+h+1)*T*T),t:'layer '+l+', head '+h};\n"
    " const m=new Float32Array(T*T);for(let k=0;k<H;k++){const o=((l*H)+k)*T*T;"
    "for(let e=0;e<T*T;e++)m[e]+=D.maps[o+e]/H;}return{m:m,t:'layer '+l+', mean of '+H+' "
    "heads'};}\n"
    "const "
    "cv=document.getElementById('cv'),cx=cv.getContext('2d'),tip=document.getElementById('tip');\n"
    "let G={};\n"
    "function short(s){return s.length>20?s.slice(0,19)+'\\u2026':s;}\n"
    "function draw(){const c=cur();document.getElementById('what').textContent=c.t;\n"
    " const cell=Math.max(4,Math.min(28,Math.floor(640/T))),fs=Math.max(7,Math.min(12,cell-2));\n"
    " cx.font=fs+'px sans-serif';let w=0;for(const s of "
    "tok)w=Math.max(w,cx.measureText(short(s)).width);\n"
    " const step=Math.ceil((fs+1)/cell),left=w+12,top=w+12;\n"
    " const "
    "dpr=window.devicePixelRatio||1;cv.width=(left+cell*T+10)*dpr;cv.height=(top+cell*T+10)*dpr;\n"
    " cv.style.width=(left+cell*T+10)+'px';cv.style.height=(top+cell*T+10)+'px';\n"
    " cx.setTransform(dpr,0,0,dpr,0,0);cx.fillStyle='#fff';cx.fillRect(0,0,cv.width,cv.height);\n"
    " cx.font=fs+'px "
    "sans-serif';cx.fillStyle='#222';cx.textAlign='right';cx.textBaseline='middle';\n"
    " for(let i=0;i<T;i+=step)cx.fillText(short(tok[i]),left-6,top+(i+.5)*cell);\n"
    " for(let "
    "j=0;j<T;j+=step){cx.save();cx.translate(left+(j+.5)*cell,top-6);cx.rotate(-Math.PI/2);"
    "cx.textAlign='left';cx.fillText(short(tok[j]),0,0);cx.restore();}\n"
    " for(let i=0;i<T;i++)for(let j=0;j<T;j++){cx.fillStyle=col(c.m[i*T+j]);"
    "cx.fillRect(left+j*cell,top+i*cell,cell+.5,cell+.5);}\n"
    " G={c:c,cell:cell,left:left,top:top};\n"
    " for(const r of document.querySelectorAll('tbody tr'))r.classList.toggle('sel',!rb.checked&&"
    "+r.dataset.l===+ls.value&&+r.dataset.h===+hs.value);}\n"
    "cv.addEventListener('mousemove',e=>{const r=cv.getBoundingClientRect();"
    "const "
    "j=Math.floor((e.clientX-r.left-G.left)/G.cell),i=Math.floor((e.clientY-r.top-G.top)/G.cell);\n"
    " if(i<0||j<0||i>=T||j>=T){tip.style.display='none';return;}\n"
    " tip.textContent='query '+i+' \\u201c'+tok[i]+'\\u201d \\u2192 key '+j+' \\u201c'+tok[j]+"
    "'\\u201d\\n'+(rb.checked?'rollout ':'p = ')+G.c.m[i*T+j].toFixed(4);\n"
    " tip.style.display='block';tip.style.left=(e.clientX-r.left+14)+'px';"
    "tip.style.top=(e.clientY-r.top+14)+'px';});\n"
    "cv.addEventListener('mouseleave',()=>tip.style.display='none');\n"
    "const tb=document.getElementById('rows');\n"
    "for(let l=0;l<L;l++)for(let h=0;h<H;h++){const s=D.stats[l*H+h],tr=tb.insertRow();"
    "tr.dataset.l=l;tr.dataset.h=h;\n"
    " for(const v of [l,h,s[0].toFixed(3),s[1].toFixed(2),s[2].toFixed(3),s[3].toFixed(3),"
    "s[4].toFixed(3)])tr.insertCell().textContent=v;\n"
    " tr.onclick=()=>{ls.value=l;hs.value=h;rb.checked=false;draw();};}\n"
    "document.querySelectorAll('th').forEach((th,k)=>th.onclick=()=>{const rs=[...tb.rows];"
    "const d=th.dataset.d=th.dataset.d==='1'?'-1':'1';\n"
    " rs.sort((a,b)=>d*(parseFloat(a.cells[k].textContent)-parseFloat(b.cells[k].textContent)));"
    "rs.forEach(r=>tb.appendChild(r));});\n"
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
    "ls.onchange=hs.onchange=rb.onchange=draw;draw();\n";

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

/* The page's data as one JSON object in a malloc'd string. */
static char *page_json(const attn_page *p, size_t *len) {
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    if (!f) return NULL;
    const size_t tt = (size_t)(p->T * p->T);
    fprintf(f, "{\"T\":%lld,\"L\":%lld,\"H\":%lld,\"tokens\":[", (long long)p->T, (long long)p->L,
            (long long)p->H);
    for (int64_t i = 0; i < p->T; i++) {
        if (i) fputc(',', f);
        json_write_string(f, p->tokens[i], strlen(p->tokens[i]));
    }
    fputs("],\"maps\":", f);
    put_floats(f, p->maps, (size_t)(p->L * p->H) * tt);
    fputs(",\"rollout\":", f);
    put_floats(f, p->rollout, tt);
    fputs(",\"stats\":[", f);
    for (int64_t k = 0; k < p->L * p->H; k++) {
        const qkv_head_stats *s = &p->stats[k];
        json_printf(f, "%s[%.6g,%.6g,%.6g,%.6g,%.6g]", k ? "," : "", s->entropy, s->distance,
                    s->cls, s->sep, s->prev); /* a NaN statistic is null */
    }
    fputs("],\"saliency\":", f);
    if (p->saliency)
        put_floats(f, p->saliency, (size_t)p->T);
    else
        fputs("null", f);
    fputs(",\"ig\":", f);
    if (p->ig)
        put_floats(f, p->ig, (size_t)p->T);
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
    fputs("<h1>Attention maps</h1>\n<p class=\"src\">model <b>", f);
    put_text(f, p->model);
    fputs("</b></p>\n<p class=\"src\">text <b>", f);
    put_text(f, p->text);
    fputs("</b></p>\n", f);
    if (p->pair) {
        fputs("<p class=\"src\">pair <b>", f);
        put_text(f, p->pair);
        fputs("</b></p>\n", f);
    }
    fprintf(f,
            "<p class=\"note\">%lld tokens, %lld layers &times; %lld heads. Row i of a map is how "
            "query token i spreads its attention over the key tokens (each row sums to 1). "
            "Attention weights show where a head reads from, not why the model decides: see "
            "docs/INTERPRET.md.</p>\n",
            (long long)p->T, (long long)p->L, (long long)p->H);
    fputs("<div class=\"bar\"><select id=\"layer\"></select><select id=\"head\"></select>"
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
    fprintf(f,
            "<h2>Heads</h2><p class=\"note\">Means over query tokens: entropy in nats (0 = "
            "one key, ln T = uniform), distance in tokens, shares of attention on %s, on %s "
            "and on the previous token. Click a row to show that head; click a column title "
            "to sort.</p>\n<table><thead><tr><th>layer</th><th>head</th><th>entropy</th>"
            "<th>distance</th><th>%s</th><th>%s</th><th>previous</th></tr></thead>"
            "<tbody id=\"rows\"></tbody></table>\n",
            p->cls_name, p->sep_name, p->cls_name, p->sep_name);
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
    if (!path || !p || !p->tokens || !p->maps || !p->rollout || !p->stats || p->T < 1) {
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
