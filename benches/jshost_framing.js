// NDJSON vs 4-byte length-prefixed framing for the host's input: decode N call messages
// arriving in 64 KiB pieces, as a pipe delivers them.
const N = 200000;
const msg = JSON.stringify({t:'call',id:123456,name:'echoHandler',params:[],event:{id:'6f1c7d8e-1111-4aaa-8bbb-123456789abc',correlationId:'6f1c7d8e-1111-4aaa-8bbb-123456789abc',name:'echo',method:'get',params:{},payload:{a:1,text:'hello world'},request:{name:'echo',method:'get',headers:{'message-id':'m1','connection-id':'c1','postback-url':'http://127.0.0.1:9100/@connections/c1'},params:{},query:{},path:'',pathAndQuery:'',payload:{a:1,text:'hello world'}},response:{statusCode:200,headers:{},body:''},push:true}});
function pieces(buf) { const out=[]; for (let i=0;i<buf.length;i+=65536) out.push(buf.subarray(i,i+65536)); return out; }
const nd = Buffer.from((msg+'\n').repeat(N));
const one = Buffer.from(msg); const lp = Buffer.alloc((4+one.length)*N);
for (let i=0;i<N;i++){ lp.writeUInt32LE(one.length,i*(4+one.length)); one.copy(lp,i*(4+one.length)+4); }
function runNd(){ let inBuf=''; let n=0; for (const p of pieces(nd)) { inBuf += p.toString('utf8'); const lines=inBuf.split('\n'); inBuf=lines.pop(); for (const l of lines) { JSON.parse(l); n++; } } return n; }
function runLp(){ let acc=Buffer.alloc(0); let n=0; for (const p of pieces(lp)) { acc = acc.length? Buffer.concat([acc,p]) : p; let off=0; while (acc.length-off>=4){ const len=acc.readUInt32LE(off); if (acc.length-off-4<len) break; JSON.parse(acc.toString('utf8',off+4,off+4+len)); n++; off+=4+len; } acc=acc.subarray(off);} return n; }
for (const [name,f] of [['ndjson',runNd],['length-prefixed',runLp],['ndjson',runNd],['length-prefixed',runLp]]) { const t=process.hrtime.bigint(); const n=f(); const ms=Number(process.hrtime.bigint()-t)/1e6; console.log(`${name}: ${n} msgs ${ms.toFixed(0)} ms, ${(ms*1e6/n).toFixed(0)} ns/msg`); }
